//! Settings of the remote backends that exist whether or not this cbsnap was built
//! with them (the `remote` Cargo feature): the config file's `[s3]` section and the
//! retry policy. The backends themselves are in [`super::opendal`].

use std::time::Duration;

use serde::Deserialize;

/// The `[s3]` section of the config file: how to reach an S3-compatible store. Each
/// value is used when the matching environment variable is unset (the AWS CLI's order:
/// environment before config file).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `https://s3.eu-central-003.backblazeb2.com`, `http://minio:9000`
    /// (env `AWS_ENDPOINT_URL`; default AWS).
    pub endpoint: Option<String>,
    /// Env `AWS_REGION`, else `AWS_DEFAULT_REGION`; default `us-east-1`.
    pub region: Option<String>,
    /// Env `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Env `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Env `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO, Garage and most
    /// S3-compatible servers want; `false` for virtual-host style
    /// (`bucket.endpoint/key`). Default `true`.
    pub path_style: Option<bool>,
    /// Upload parts (5 MiB each) held in memory at once, all uploads to the repository
    /// together (default 6; from 3 to 1024); an SFTP repository has the default.
    pub concurrency: Option<usize>,
}

/// How long a request to a remote repository may take, how transient errors are
/// retried, and how long a server that stopped answering is left alone.
///
/// `attempts` tries after the first, with exponential backoff from `min_delay` up to
/// `max_delay`, with jitter. Each try ends after `timeout` (a request without a body:
/// stat, list, delete, rename) or after `io_timeout` without progress of a body. Once
/// one request has spent its tries on a server that does not answer (a timeout, a
/// refused or cut connection, a 5xx, rate limiting), every request of the handle
/// fails at once for `pause`, those under way included, instead of each spending its
/// own tries: a frozen server fails the command in one request's time, not in that
/// of every request it still had to make.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
    pub io_timeout: Duration,
    pub pause: Duration,
}

impl Default for Retry {
    /// 4 retries, 0.5 s doubling to at most 8 s (about 7.5 s of waiting); 60 s per
    /// request, 30 s without progress of a body; a server that did not answer is left
    /// alone for 60 s. A frozen server fails a request after about 5 minutes
    /// (5 × 60 s), and everything after it at once.
    fn default() -> Self {
        Retry {
            attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            pause: Duration::from_secs(60),
        }
    }
}
