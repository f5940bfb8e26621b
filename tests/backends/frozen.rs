//! A server that stops answering with its connections open (a frozen S3 endpoint):
//! the first request fails after its own tries, and the breaker fails every other
//! request of the handle at once, those under way included, without sending them,
//! until its pause is over. A command used to spend every request's tries in turn
//! (6 to 14 minutes for a snapshot) before it failed.

use std::sync::Arc;
use std::time::Duration;

use cbsnap::storage::{Location, Remote, Retry, S3Settings, Storage, StorageError};

use crate::util::servers::Frozen;

fn frozen_remote(server: &Frozen, pause: Duration) -> Arc<Remote> {
    let location = Location::parse("s3://frozen/repo").unwrap();
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{}", server.port)),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..S3Settings::default()
    };
    let retry = Retry {
        attempts: 1,
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        pause,
    };
    Arc::new(Remote::open(&location, &settings, retry).unwrap())
}

/// The `AWS_*` variables of the test servers come before the endpoint the settings
/// give (as the AWS CLI's order has it): run the test `name` again in a child process
/// without them. `true` in the parent, once the child passed; `false` in the child.
fn rerun_without_aws_env(name: &str) -> bool {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        return false;
    }
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--test-threads=1"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(&k);
        }
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("1 passed"),
        "{name} without the AWS_* variables:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    true
}

fn transient(r: Result<impl std::fmt::Debug, StorageError>) -> String {
    match r {
        Err(e @ StorageError::Transient { .. }) => {
            format!("{e}: {:?}", std::error::Error::source(&e))
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[test]
fn a_frozen_server_fails_one_request_in_its_time_and_the_others_at_once() {
    if rerun_without_aws_env(
        "backends::frozen::a_frozen_server_fails_one_request_in_its_time_and_the_others_at_once",
    ) {
        return;
    }
    let server = Frozen::start();
    let remote = frozen_remote(&server, Duration::from_secs(600));

    // A request under way when the first one gives up is cut short.
    let first = {
        let r = remote.clone();
        std::thread::spawn(move || r.size("config"))
    };
    std::thread::sleep(Duration::from_millis(500));
    let under_way = {
        let r = remote.clone();
        std::thread::spawn(move || r.read("snapshots/x"))
    };
    let first = transient(first.join().unwrap());
    assert!(
        !first.contains("earlier request"),
        "the first fails on its own: {first}"
    );
    let cut = transient(under_way.join().unwrap());
    assert!(cut.contains("did not answer an earlier request"), "{cut}");
    let sent = server.connections();
    assert!(sent >= 2, "both reached the server first: {sent}");

    // Every later request fails without being sent: reads, writes, lists, deletes.
    let later = [
        transient(remote.size("keys/a")),
        transient(remote.write("locks/l", b"{}")),
        transient(remote.list("snapshots/").map(|l| l.len())),
        transient(remote.delete("locks/l")),
    ];
    for e in &later {
        assert!(e.contains("did not answer an earlier request"), "{e}");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![7u8; 1 << 20]).unwrap();
    let upload = transient(remote.write_file("packs/00/p", file.path()));
    assert!(upload.contains("earlier request"), "{upload}");
    assert_eq!(server.connections(), sent, "nothing more was sent");
}

/// Within the pause a request is not sent; once it is over, requests go to the
/// server again.
#[test]
fn a_server_left_alone_is_asked_again_after_the_pause() {
    if rerun_without_aws_env("backends::frozen::a_server_left_alone_is_asked_again_after_the_pause")
    {
        return;
    }
    let server = Frozen::start();
    // 5 s: a loaded host (test suites, builds) once kept this process from its next
    // request for longer than a 1.5 s pause.
    let remote = frozen_remote(&server, Duration::from_secs(5));
    transient(remote.size("config"));
    let sent = server.connections();
    // Within the pause: refused without being sent (so that the test below can
    // fail: without a breaker every request is sent).
    let refused = transient(remote.size("config"));
    assert!(refused.contains("earlier request"), "{refused}");
    assert_eq!(server.connections(), sent, "nothing sent within the pause");
    std::thread::sleep(Duration::from_millis(5200));
    let again = transient(remote.size("config"));
    assert!(!again.contains("earlier request"), "{again}");
    assert!(server.connections() > sent, "it was asked again");
}
