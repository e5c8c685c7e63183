//! The remote cache, against a real S3-compatible server process (moto's
//! standalone server from PyPI, installed into `.tools/s3` by
//! scripts/setup.sh and started here on loopback) and against a shared
//! directory: the clone → pull → nothing runs workflow, a damaged object on
//! the remote (detected, never used), an interrupted push (the next one
//! completes it), and an unreachable remote (the local run goes on).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{copy_tree, example, ok, repo, run_in, tailor, text};

/// A moto S3 server on a free loopback port, with one bucket; killed on drop.
struct S3 {
    child: Child,
    port: u16,
}

impl S3 {
    fn start() -> S3 {
        let tools = repo().join(".tools/s3");
        assert!(tools.join("moto").is_dir(), "{} is missing: scripts/setup.sh installs moto's S3 server there", tools.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", &tools)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs moto.server");
        let s3 = S3 { child, port };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(60), "the S3 server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, _) = s3.http("PUT", "/tailor", b"");
        assert_eq!(status, 200, "creating the bucket");
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP request (the test server does not check signatures).
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.port, body.len());
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let status = text(&reply).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let at = reply.windows(4).position(|w| w == b"\r\n\r\n").map_or(reply.len(), |i| i + 4);
        (status, reply[at..].to_vec())
    }

    /// Write an object as another S3 client would (boto3, signed).
    fn put(&self, key: &str, bytes: &[u8]) {
        let script = "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').put_object(Bucket='tailor', Key=sys.argv[2], Body=sys.stdin.buffer.read())";
        let mut c = Command::new("python3")
            .args(["-c", script, &self.endpoint(), key])
            .env("PYTHONPATH", repo().join(".tools/s3"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(c.wait().unwrap().success(), "boto3 put_object {key}");
    }

    /// Keys under a prefix (ListObjectsV2).
    fn keys(&self, prefix: &str) -> Vec<String> {
        let (status, body) = self.http("GET", &format!("/tailor?list-type=2&prefix={prefix}"), b"");
        assert_eq!(status, 200);
        text(&body).split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the remote is, and how to damage an object on it.
enum Where<'a> {
    S3(&'a S3),
    Dir(PathBuf),
}

impl Where<'_> {
    fn add(&self, dir: &Path) {
        match self {
            Where::S3(s3) => ok(dir, &["remote", "add", "s3://tailor/team", "--endpoint", &s3.endpoint(), "--region", "us-east-1"]),
            Where::Dir(d) => ok(dir, &["remote", "add", &d.display().to_string()]),
        };
    }

    fn object_keys(&self) -> Vec<String> {
        match self {
            Where::S3(s3) => s3.keys("team/objects/").into_iter().map(|k| k.trim_start_matches("team/").to_string()).collect(),
            Where::Dir(d) => walk(d).into_iter().map(|p| p.strip_prefix(d).unwrap().display().to_string()).filter(|k| k.starts_with("objects/")).collect(),
        }
    }

    fn overwrite(&self, key: &str, bytes: &[u8]) {
        match self {
            Where::S3(s3) => s3.put(&format!("team/{key}"), bytes),
            Where::Dir(d) => {
                let p = d.join(key);
                let mut perm = std::fs::metadata(&p).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perm.set_readonly(false);
                std::fs::set_permissions(&p, perm).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// `tailor ARGS` with test S3 credentials in the environment.
fn with_creds(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut c = tailor();
    c.current_dir(dir).args(args).env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test").env("AWS_REGION", "us-east-1");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn must(out: Output, what: &str) -> String {
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{log}");
    log
}

/// What a fresh clone of the repository has: the pipeline, its inputs and the committed lock; no store.
fn clone_of(dir: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_tree(dir, to.path());
    std::fs::copy(dir.join("tailor.lock"), to.path().join("tailor.lock")).unwrap();
    to
}

/// Two independent small branches (quick to run).
fn small(dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for name in ["a", "b"] {
        let rows: String = (0..30).map(|i| format!("{{\"prompt\": \"{name} question {i}\", \"completion\": \"answer {i}\"}}\n")).collect();
        std::fs::write(dir.join(format!("data/{name}.jsonl")), rows).unwrap();
    }
    let stage = |n: &str| {
        format!(
            "  {n}: {{kind: collect, sources: [{{path: data/{n}.jsonl}}]}}\n  {n}_clean: {{kind: clean, input: {n}, steps: [{{dedup: {{exact: true, field: prompt}}}}]}}\n"
        )
    };
    std::fs::write(dir.join("tailor.yaml"), format!("version: 1\nname: small\nstages:\n{}{}", stage("a"), stage("b"))).unwrap();
}

#[test]
fn a_clone_pulls_from_s3_runs_nothing_and_reruns_only_what_a_change_touches() {
    let s3 = S3::start();
    let here = Where::S3(&s3);
    let origin = example("loop");
    here.add(origin.path());
    let log = must(with_creds(origin.path(), &["run", "--push"], &[]), "run --push");
    assert!(log.contains("pushed 15 stage records"), "{log}");

    let clone = clone_of(origin.path());
    let log = must(with_creds(clone.path(), &["pull"], &[]), "pull");
    assert!(log.contains("pulled 15 stages"), "{log}");
    let log = must(with_creds(clone.path(), &["run"], &[]), "run after pull");
    assert!(log.contains("Nothing to do"), "{log}");
    must(with_creds(clone.path(), &["verify"], &[]), "verify");
    let shown = must(with_creds(clone.path(), &["show", "scored"], &[]), "show");
    assert!(shown.contains("results.jsonl"), "{shown}");
    // One setting changes: the exam set's formatting. Only it and the evaluation that reads it run.
    let log = must(with_creds(clone.path(), &["run", "--set", "stages.exam.max_tokens=96"], &[]), "run with a change");
    let ran: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("  run     ")).map(|l| l.split(' ').next().unwrap_or_default()).collect();
    assert_eq!(ran, ["exam", "examined"], "{log}");

    // Another clone never pulls: `run` finds the results on the remote by fingerprint.
    let other = clone_of(origin.path());
    let log = must(with_creds(other.path(), &["run"], &[]), "run consulting the remote");
    assert!(log.contains("(fetched from the remote)") && !log.contains("  run     "), "{log}");
}

fn damaged_and_interrupted(here: Where<'_>, creds: bool) {
    let env: &[(&str, &str)] = &[];
    let go = |dir: &Path, args: &[&str], extra: &[(&str, &str)]| {
        if creds { with_creds(dir, args, extra) } else { tailor().current_dir(dir).args(args).envs(extra.iter().copied()).output().unwrap() }
    };
    let origin = tempfile::tempdir().unwrap();
    small(origin.path());
    here.add(origin.path());
    must(go(origin.path(), &["run"], env), "run");

    // An interrupted push publishes no record whose content is missing; the next push completes it.
    let out = go(origin.path(), &["push"], &[("TAILOR_FAULT_PUSH_EXIT_AFTER", "2")]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let half = clone_of(origin.path());
    let out = go(half.path(), &["pull"], env);
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success() && log.contains("not on the remote") && !log.contains("damaged"), "{log}");
    let log = must(go(origin.path(), &["push"], env), "second push");
    assert!(log.contains("already there") && !log.contains(" 0 already there"), "the second push skips what the first one uploaded:\n{log}");
    let full = clone_of(origin.path());
    must(go(full.path(), &["pull"], env), "pull after the completed push");
    assert!(must(go(full.path(), &["run"], env), "run").contains("Nothing to do"));

    // A damaged object on the remote is detected and never used.
    let keys = here.object_keys();
    assert!(!keys.is_empty());
    for k in &keys {
        here.overwrite(k, b"not what the digest says");
    }
    let fresh = clone_of(origin.path());
    let out = go(fresh.path(), &["pull"], env);
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("damaged on the remote, not used"), "{log}");
    let log = must(go(fresh.path(), &["run"], env), "run after a damaged pull");
    assert!(log.contains("the remote's copy is damaged and was not used") && log.contains("  run     a "), "{log}");
    must(go(fresh.path(), &["verify"], env), "verify");
    let a = std::fs::read_to_string(origin.path().join("tailor.lock")).unwrap();
    assert_eq!(a, std::fs::read_to_string(fresh.path().join("tailor.lock")).unwrap(), "recomputed results equal the originals");
}

#[test]
fn s3_remote_damage_is_never_used_and_an_interrupted_push_is_completed() {
    let s3 = S3::start();
    damaged_and_interrupted(Where::S3(&s3), true);
}

#[test]
fn directory_remote_damage_is_never_used_and_an_interrupted_push_is_completed() {
    let shared = tempfile::tempdir().unwrap();
    damaged_and_interrupted(Where::Dir(shared.path().join("cache")), false);
}

#[test]
fn an_unreachable_remote_is_reported_and_the_local_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    small(dir.path());
    // Nothing listens on port 1.
    ok(dir.path(), &["remote", "add", "s3://tailor/team", "--endpoint", "http://127.0.0.1:1"]);
    let t = Instant::now();
    let log = must(with_creds(dir.path(), &["run"], &[]), "run with the remote down");
    assert!(log.contains("the remote s3://tailor/team cannot be used") && log.contains("going on without it"), "{log}");
    assert!(log.contains("4 ran"), "{log}");
    assert!(t.elapsed() < Duration::from_secs(60), "an unreachable remote must not hold a run up");
    let out = with_creds(dir.path(), &["push"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("push to s3://tailor/team failed"), "{err}");
    // A bad remote URL is caught when the file is loaded.
    let out = run_in(dir.path(), &["remote", "add", "ftp://host/x"]);
    assert!(out.status.success(), "the URL is checked when used: {}", text(&out.stderr));
    let err = text(&with_creds(dir.path(), &["push"], &[]).stderr);
    assert!(err.contains("unsupported scheme"), "{err}");
}
