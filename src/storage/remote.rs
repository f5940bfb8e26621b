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

/// How transient errors are retried: `attempts` tries after the first, with exponential
/// backoff from `min_delay` up to `max_delay`, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    /// 4 retries, 0.5 s doubling to at most 8 s: about 7.5 s before a transient error
    /// is given up.
    fn default() -> Self {
        Retry {
            attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}
