//! Data-parallel ranks talk through libtorch's own distributed backend
//! (c10d): a TCPStore for the rendezvous, a Gloo process group for the sums
//! (`csrc/dist.cpp`). Training needs one collective: sum tensors across
//! ranks, in place. Every call has a timeout, so a rank that stops answering
//! fails the others with an error instead of hanging them; a rank whose
//! process ends closes its sockets and fails them at once.

use std::ffi::{CStr, CString, c_void};

use tch::{Kind, Tensor};
use torch_sys::C_tensor;

unsafe extern "C" {
    fn tailor_dist_last_error() -> *const std::ffi::c_char;
    fn tailor_dist_store(host: *const std::ffi::c_char, port: i32, server: i32, world: i32, timeout_ms: i32) -> *mut c_void;
    fn tailor_dist_port(handle: *mut c_void) -> i32;
    fn tailor_dist_join(handle: *mut c_void, own_host: *const std::ffi::c_char, rank: i32, world: i32, timeout_ms: i32) -> i32;
    fn tailor_dist_allreduce(handle: *mut c_void, ts: *const *mut C_tensor, n: i32, bucket_bytes: i64) -> i32;
    fn tailor_dist_free(handle: *mut c_void);
}

fn last_error() -> String {
    // SAFETY: a pointer to the C side's thread-local, NUL-terminated message.
    unsafe { CStr::from_ptr(tailor_dist_last_error()) }.to_string_lossy().into_owned()
}

/// How long a rendezvous or a collective may wait for the other ranks:
/// `TAILOR_DIST_TIMEOUT_S` seconds, default 600 (a checkpoint written by
/// rank 0 while the others wait must fit in it).
pub fn timeout_ms() -> i32 {
    let secs = std::env::var("TAILOR_DIST_TIMEOUT_S").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(600.0);
    (secs * 1000.0).min(i32::MAX as f64) as i32
}

/// How many bytes of gradients one collective sums (a flat bucket; a larger
/// tensor goes alone): `TAILOR_DIST_BUCKET_BYTES`, default 64 MiB. Buckets
/// bound the extra memory of summing to one bucket at a time.
fn bucket_bytes() -> i64 {
    std::env::var("TAILOR_DIST_BUCKET_BYTES").ok().and_then(|s| s.parse::<i64>().ok()).filter(|b| *b > 0).unwrap_or(64 << 20)
}

/// A rendezvous store, then (after [`Store::join`]) a process group.
pub struct Store {
    raw: *mut c_void,
    world: usize,
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: `raw` came from tailor_dist_store and is freed once.
        unsafe { tailor_dist_free(self.raw) }
    }
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("`{s}` contains a NUL byte"))
}

impl Store {
    /// Rank 0's store, served on `host` at a free port ([`Store::port`]).
    pub fn serve(host: &str, world: usize) -> Result<Store, String> {
        Store::open(host, 0, true, world)
    }

    /// Another rank's connection to rank 0's store.
    pub fn connect(host: &str, port: u16, world: usize) -> Result<Store, String> {
        Store::open(host, i32::from(port), false, world)
    }

    fn open(host: &str, port: i32, server: bool, world: usize) -> Result<Store, String> {
        let h = cstring(host)?;
        // SAFETY: `h` outlives the call; the result is null or a new handle we own.
        // Joining takes seconds (ranks join before loading anything), so a
        // rank that never comes fails the others within two minutes.
        let raw = unsafe { tailor_dist_store(h.as_ptr(), port, i32::from(server), world as i32, timeout_ms().min(120_000)) };
        if raw.is_null() {
            return Err(format!("the rendezvous store at {host}:{port}: {}", last_error()));
        }
        Ok(Store { raw, world })
    }

    /// The port the store listens on (rank 0).
    pub fn port(&self) -> u16 {
        // SAFETY: a live handle.
        u16::try_from(unsafe { tailor_dist_port(self.raw) }).unwrap_or(0)
    }

    /// Join the process group as `rank`, reachable at `own_host`; returns
    /// once every rank has joined.
    pub fn join(self, own_host: &str, rank: usize) -> Result<Group, String> {
        let h = cstring(own_host)?;
        // SAFETY: a live handle; `h` outlives the call.
        if unsafe { tailor_dist_join(self.raw, h.as_ptr(), rank as i32, self.world as i32, timeout_ms()) } != 0 {
            return Err(format!("rank {rank} of {} could not join the others: {}", self.world, last_error()));
        }
        Ok(Group { rank, world: self.world, store: self })
    }
}

/// This process's place among the data-parallel ranks.
pub struct Group {
    /// This rank, 0-based.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    store: Store,
}

impl Group {
    /// Sum `tensors` across ranks, in place (per dtype, in flat buckets of
    /// [`bucket_bytes`], one collective each; on any device Gloo takes). Every rank must pass tensors of the same shapes, in the same order.
    pub fn sum(&self, tensors: &[Tensor]) -> Result<(), String> {
        let mut kinds: Vec<Kind> = tensors.iter().map(Tensor::kind).collect();
        kinds.dedup();
        kinds.sort_by_key(|k| format!("{k:?}"));
        kinds.dedup();
        for kind in kinds {
            let ptrs: Vec<*mut C_tensor> = tensors.iter().filter(|t| t.kind() == kind).map(|t| t.as_ptr() as *mut C_tensor).collect();
            // SAFETY: live tensors for the duration of the call; the C side
            // writes their contents in place, as tch's own in-place ops do.
            if unsafe { tailor_dist_allreduce(self.store.raw, ptrs.as_ptr(), ptrs.len() as i32, bucket_bytes()) } != 0 {
                return Err(format!("rank {} of {}: summing across ranks failed: {}", self.rank, self.world, last_error()));
            }
        }
        Ok(())
    }

    /// Sum a few numbers across ranks.
    pub fn sum_f64(&self, values: &[f64]) -> Result<Vec<f64>, String> {
        let t = Tensor::from_slice(values);
        self.sum(std::slice::from_ref(&t))?;
        Vec::<f64>::try_from(&t).map_err(|e| e.to_string())
    }
}
