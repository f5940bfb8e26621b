//! Repository locations as an operator writes them (`--repo`, `CBSNAP_REPO`, the config
//! file's `repo`, `cbsnap mirror DEST`), parsed into the backend that serves them.
//!
//! A path is today's local repository; `s3://bucket/prefix` and
//! `sftp://[user@]host[:port]/path` are the remote backends (issue 10). Anything else
//! that looks like a scheme (`b2://…`, `s3:bucket`, `host:path`) is an error naming the
//! forms cbsnap knows, never a local directory: `--repo s3://bucket/x` used to create a
//! folder `./s3:` and leave the operator believing the backup went off-host. A local
//! directory whose name holds a ':' is still reachable as `./name:with:colons`.
//!
//! The rule for "looks like a scheme" is rsync's: a ':' before the first '/' makes the
//! string remote. `mirror` additionally hands `host:path` and `rsync://` to rsync
//! ([`MirrorDest`]).

use std::fmt;
use std::path::PathBuf;

/// The forms a repository location can take, for error messages.
pub const KNOWN_FORMS: &str =
    "a path (/srv/repo, ./repo), s3://bucket/prefix or sftp://[user@]host[:port]/path";

/// Scheme names of other backup tools and storage services. `mirror NAME:…` with one of
/// these is refused instead of being handed to rsync as a host name.
const FOREIGN_SCHEMES: &[&str] = &[
    "azure", "az", "b2", "cos", "file", "ftp", "ftps", "gcs", "gs", "http", "https", "minio",
    "obs", "oss", "r2", "rclone", "rest", "s3", "sftp", "ssh", "swift", "webdav",
];

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this host (today's layout).
    Local(PathBuf),
    /// An S3-compatible bucket. `prefix` is `""` or `a/b`: no leading or trailing '/'.
    /// Endpoint, region and credentials come from the environment or the config file.
    S3 { bucket: String, prefix: String },
    /// A directory on an SFTP server, reached as `ssh` would reach `host` (the user's
    /// `~/.ssh/config`, keys and known_hosts apply). `user` and `port` default to what
    /// the ssh configuration says. `path` is absolute on the server (`/srv/repo`).
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
}

/// A location that cbsnap cannot use. Each message says which forms it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("the repository location is empty; give {KNOWN_FORMS}")]
    Empty,
    /// `scheme://…` with a scheme cbsnap has no backend for.
    #[error("`{location}`: cbsnap does not know the scheme `{scheme}://`. A repository location is {KNOWN_FORMS}.")]
    UnknownScheme { location: String, scheme: String },
    /// `word:rest` (a ':' before the first '/'): a scheme without `//`, or rsync's
    /// `host:path`, neither of which is a repository location.
    #[error("`{location}` is not a repository location cbsnap knows: it takes {KNOWN_FORMS}{hint}. For a local directory whose name contains ':', write `./{location}`.")]
    NotALocation { location: String, hint: String },
    /// A known scheme with a missing or malformed part.
    #[error("`{location}`: {reason}; the form is {form}")]
    Invalid {
        location: String,
        reason: String,
        form: &'static str,
    },
}

const S3_FORM: &str = "s3://bucket/prefix";
const SFTP_FORM: &str = "sftp://[user@]host[:port]/path";

impl Location {
    /// Parse a repository location (see the module doc). A leading `~/` is not expanded
    /// here: the shell expands it on the command line, the config file's reader does.
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        match split_remote(s) {
            // `s3//bucket/x`, a colon short: an off-host repository meant, never the
            // local directory `./s3` it would otherwise create.
            None if ["s3//", "sftp//"].iter().any(|w| {
                s.len() > w.len() && s.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w))
            }) =>
            {
                let word = &s[..s.find('/').unwrap_or(0)];
                Err(LocationError::NotALocation {
                    location: s.to_string(),
                    hint: format!(" (did you mean `{word}:{}`?)", &s[word.len()..]),
                })
            }
            None => Ok(Location::Local(PathBuf::from(s))),
            Some(Remote::Url { scheme }) => parse_url(s, scheme),
            Some(Remote::Colon { word }) => {
                let hint = if FOREIGN_SCHEMES.contains(&word.to_ascii_lowercase().as_str()) {
                    match word {
                        "s3" | "sftp" => format!(" (did you mean `{word}://…`?)"),
                        _ => String::new(),
                    }
                } else {
                    " (`host:path` is an rsync destination, which only `cbsnap mirror` takes)"
                        .to_string()
                };
                Err(LocationError::NotALocation {
                    location: s.to_string(),
                    hint,
                })
            }
        }
    }

    /// The local directory, for a path location.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            Location::Local(p) => Some(p),
            _ => None,
        }
    }

    /// `true` for the remote backends (S3, SFTP).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }
}

impl fmt::Display for Location {
    /// The form an operator writes (and [`Location::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                f.write_str("sftp://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                f.write_str(path)
            }
        }
    }
}

impl std::str::FromStr for Location {
    type Err = LocationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

/// Where `cbsnap mirror` copies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorDest {
    /// A path, `[user@]host:path` or `rsync://…`: given to rsync as written.
    Rsync(String),
    /// An object store or SFTP server, written to through the storage backend.
    Backend(Location),
}

impl MirrorDest {
    /// Parse a mirror destination: what [`Location::parse`] takes, plus rsync's
    /// `host:path` and `rsync://`. `s3:bucket` or `b2:bucket` (a scheme name as the
    /// host) is refused rather than handed to ssh as a host name.
    pub fn parse(s: &str) -> Result<MirrorDest, LocationError> {
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        match split_remote(s) {
            None => Ok(MirrorDest::Rsync(s.to_string())),
            Some(Remote::Url { scheme }) if scheme.eq_ignore_ascii_case("rsync") => {
                Ok(MirrorDest::Rsync(s.to_string()))
            }
            Some(Remote::Url { .. }) => Location::parse(s).map(MirrorDest::Backend),
            Some(Remote::Colon { word }) => {
                let host = word.rsplit('@').next().unwrap_or(word);
                if FOREIGN_SCHEMES.contains(&host.to_ascii_lowercase().as_str()) {
                    let hint = match host {
                        "s3" | "sftp" => format!(" (did you mean `{host}://…`?)"),
                        _ => String::new(),
                    };
                    return Err(LocationError::NotALocation {
                        location: s.to_string(),
                        hint: format!("{hint}, or rsync's [user@]host:path"),
                    });
                }
                Ok(MirrorDest::Rsync(s.to_string()))
            }
        }
    }
}

enum Remote<'a> {
    /// `scheme://rest`
    Url { scheme: &'a str },
    /// `word:rest` (no `//` after the colon)
    Colon { word: &'a str },
}

/// rsync's rule: a ':' before the first '/' makes a string remote. `./a:b` and
/// `/a:b` are paths.
fn split_remote(s: &str) -> Option<Remote<'_>> {
    let colon = s.find(':')?;
    if s[..colon].contains('/') {
        return None;
    }
    let word = &s[..colon];
    let is_scheme = word.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if is_scheme && s[colon + 1..].starts_with("//") {
        Some(Remote::Url { scheme: word })
    } else {
        Some(Remote::Colon { word })
    }
}

fn parse_url(s: &str, scheme: &str) -> Result<Location, LocationError> {
    let invalid = |reason: &str, form| LocationError::Invalid {
        location: s.to_string(),
        reason: reason.to_string(),
        form,
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => {
            let rest = &s[scheme.len() + 3..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("the bucket name is missing", S3_FORM));
            }
            if bucket.contains(['@', ':', '?', '#']) || bucket.contains(char::is_whitespace) {
                return Err(invalid(
                    "a bucket name holds only letters, digits, '.', '-' and '_' (the endpoint comes from AWS_ENDPOINT_URL or the config file's [s3] section)",
                    S3_FORM,
                ));
            }
            let prefix = normalize_prefix(prefix).map_err(|reason| invalid(reason, S3_FORM))?;
            Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            })
        }
        "sftp" => {
            let url = url::Url::parse(s)
                .map_err(|e| invalid(&format!("not a valid URL ({e})"), SFTP_FORM))?;
            let host = match url.host() {
                Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
                Some(url::Host::Ipv4(a)) => a.to_string(),
                Some(url::Host::Ipv6(a)) => a.to_string(),
                _ => return Err(invalid("the host is missing", SFTP_FORM)),
            };
            if url.password().is_some() {
                return Err(invalid(
                    "a password in the location is not supported: use an ssh key (ssh-agent or ~/.ssh/config)",
                    SFTP_FORM,
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid("'?' and '#' have no meaning here", SFTP_FORM));
            }
            let user = match url.username() {
                "" => None,
                u => Some(percent_decode(u).map_err(|reason| invalid(reason, SFTP_FORM))?),
            };
            let raw = percent_decode(url.path()).map_err(|reason| invalid(reason, SFTP_FORM))?;
            let p = normalize_prefix(&raw).map_err(|reason| invalid(reason, SFTP_FORM))?;
            if p.is_empty() {
                return Err(invalid(
                    "the directory is missing (an absolute path on the server)",
                    SFTP_FORM,
                ));
            }
            let path = format!("/{p}");
            Ok(Location::Sftp {
                user,
                host,
                port: url.port(),
                path,
            })
        }
        _ => Err(LocationError::UnknownScheme {
            location: s.to_string(),
            scheme: scheme.to_string(),
        }),
    }
}

/// `a//b/` → `a/b`; `.` and `..` components are refused (a prefix names one place).
fn normalize_prefix(p: &str) -> Result<String, &'static str> {
    let mut parts = Vec::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err("'.' and '..' are not allowed in the path");
        }
        parts.push(c);
    }
    Ok(parts.join("/"))
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a percent-escape does not decode to UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> Location {
        Location::Local(PathBuf::from(s))
    }

    #[test]
    fn paths_keep_their_meaning() {
        for s in [
            "/srv/repo",
            "./repo",
            "repo",
            "../a/b",
            "./s3:bucket",
            "/x/s3://y",
            "a/b:c",
        ] {
            assert_eq!(Location::parse(s).unwrap(), local(s), "{s}");
        }
    }

    #[test]
    fn s3_bucket_and_prefix() {
        let s3 = |b: &str, p: &str| Location::S3 {
            bucket: b.into(),
            prefix: p.into(),
        };
        assert_eq!(Location::parse("s3://bucket").unwrap(), s3("bucket", ""));
        assert_eq!(Location::parse("s3://bucket/").unwrap(), s3("bucket", ""));
        assert_eq!(
            Location::parse("s3://my-bucket/a//b/").unwrap(),
            s3("my-bucket", "a/b")
        );
        assert_eq!(Location::parse("S3://b/p").unwrap(), s3("b", "p"));
        assert_eq!(Location::parse("s3://b/p").unwrap().to_string(), "s3://b/p");
        for bad in ["s3://", "s3:///x", "s3://b/../x", "s3://user@host/x"] {
            let e = Location::parse(bad).unwrap_err();
            assert!(matches!(e, LocationError::Invalid { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("s3://bucket/prefix"), "{e}");
        }
    }

    #[test]
    fn sftp_user_host_port_path() {
        assert_eq!(
            Location::parse("sftp://root@127.0.0.1:2222/srv/repo").unwrap(),
            Location::Sftp {
                user: Some("root".into()),
                host: "127.0.0.1".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            Location::parse("sftp://backup.example.com/srv//repo/").unwrap(),
            Location::Sftp {
                user: None,
                host: "backup.example.com".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        let v6 = Location::parse("sftp://u@[::1]:22/r").unwrap();
        assert_eq!(v6.to_string(), "sftp://u@[::1]:22/r");
        for s in ["sftp://root@127.0.0.1:2222/srv/repo", "sftp://h/r"] {
            assert_eq!(Location::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "sftp://",
            "sftp://host",
            "sftp://host/",
            "sftp://u:pw@host/r",
            "sftp://host:99999/r",
            "sftp://host/r?x=1",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert!(matches!(e, LocationError::Invalid { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn unknown_schemes_are_errors_never_paths() {
        for (s, scheme) in [
            ("b2://bucket/x", "b2"),
            ("file:///srv", "file"),
            ("gs://b", "gs"),
        ] {
            let e = Location::parse(s).unwrap_err();
            assert_eq!(
                e,
                LocationError::UnknownScheme {
                    location: s.into(),
                    scheme: scheme.into()
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains("s3://bucket/prefix") && msg.contains("sftp://"),
                "{msg}"
            );
        }
        for s in [
            "s3:bucket/x",
            "host:/srv/repo",
            "user@host:repo",
            "a:b",
            "C:",
        ] {
            let e = Location::parse(s).unwrap_err();
            assert!(
                matches!(e, LocationError::NotALocation { .. }),
                "{s}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("./{s}")), "{e}");
        }
        assert!(Location::parse("s3:bucket")
            .unwrap_err()
            .to_string()
            .contains("s3://"));
        // A colon short of a URL is not a local directory named `s3`.
        for (s, meant) in [
            ("s3//cbsnap-test/x", "s3://cbsnap-test/x"),
            ("SFTP//host/srv/repo", "SFTP://host/srv/repo"),
        ] {
            let e = Location::parse(s).unwrap_err();
            assert!(e.to_string().contains(meant), "{e}");
        }
        assert!(Location::parse("./s3//x").is_ok());
        assert_eq!(Location::parse(""), Err(LocationError::Empty));
    }

    #[test]
    fn mirror_takes_rsync_forms_and_backends() {
        let r = |s: &str| MirrorDest::Rsync(s.into());
        for s in [
            "/mnt/mirror",
            "mirror",
            "host:/srv/m",
            "u@host.example:m",
            "rsync://h/mod",
            "./a:b",
        ] {
            assert_eq!(MirrorDest::parse(s).unwrap(), r(s), "{s}");
        }
        assert_eq!(
            MirrorDest::parse("s3://b/p").unwrap(),
            MirrorDest::Backend(Location::S3 {
                bucket: "b".into(),
                prefix: "p".into()
            })
        );
        assert!(matches!(
            MirrorDest::parse("sftp://h/r").unwrap(),
            MirrorDest::Backend(Location::Sftp { .. })
        ));
        for bad in ["s3:bucket", "b2:bucket/x", "u@sftp:x"] {
            let e = MirrorDest::parse(bad).unwrap_err();
            assert!(
                matches!(e, LocationError::NotALocation { .. }),
                "{bad}: {e:?}"
            );
        }
        assert!(matches!(
            MirrorDest::parse("b2://bucket").unwrap_err(),
            LocationError::UnknownScheme { .. }
        ));
    }
}
