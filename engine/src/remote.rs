//! A second store to consult by fingerprint: a team's shared cache.
//!
//! The engine only asks a remote one question — "do you have the result of
//! this fingerprint?" — and the remote answers by bringing the stage record
//! and every artifact it names into the local store, each file checked
//! against its digest first. What the remote is (an S3 bucket, a shared
//! directory) and how it is reached is not the engine's business; see the
//! `tailor-remote` crate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Where a pipeline's remote cache is: a URL alone, or with settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RemoteConfig {
    /// `s3://bucket/prefix`, `file:///shared/cache` or a directory path
    /// (relative to the pipeline file).
    Url(String),
    /// A URL with S3 settings.
    Full(RemoteSettings),
}

/// A remote with settings. Credentials never go in the pipeline file: they
/// come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`), else from `~/.aws/credentials` (profile
/// `AWS_PROFILE`, else `default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    /// `s3://bucket/prefix`, `file:///shared/cache` or a directory path.
    pub url: String,
    /// S3 endpoint for S3-compatible servers (MinIO, Ceph, …): `http://host:9000`.
    /// Default: `AWS_ENDPOINT_URL`, else Amazon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region. Default: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl RemoteConfig {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            RemoteConfig::Url(u) => u,
            RemoteConfig::Full(s) => &s.url,
        }
    }
}

/// What a remote had for a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The record and all its artifacts are now in the local store.
    Hit {
        /// Bytes downloaded.
        bytes: u64,
    },
    /// The remote has no result for it.
    Miss,
    /// The remote's copy is damaged (a digest mismatch); nothing of it was used.
    Damaged(String),
}

/// A remote cache.
pub trait Remote: Send + Sync {
    /// How to name it in messages.
    fn name(&self) -> String;
    /// Bring the result of `fingerprint` into `store`, verified. `Err` means
    /// the remote could not be reached or read (the run goes on without it).
    fn fetch(&self, store: &Store, fingerprint: &str) -> Result<Fetched, String>;
}

impl std::fmt::Debug for dyn Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.name())
    }
}
