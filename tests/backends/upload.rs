//! Uploads through OpenDAL ([`cbsnap::storage::Remote`]'s `write_file`): however many
//! run at once, the parts they hold in memory stay within the budget (`[s3]
//! concurrency`, issue 9: peak RSS ≤ 64 MB on every step), none waits forever for
//! another's, and every object arrives byte-exact.

use std::sync::Arc;

use cbsnap::storage::{Location, Remote, S3Settings, Storage};

use crate::util::servers::{quick_retry, Server};

/// Four uploads at once of files of 3 parts (5 MiB each, the last shorter), 12 parts in
/// all, into a budget of `budget` parts (S3's `concurrency`; SFTP's is the default):
/// each object reads back exactly, and the parts in memory never exceeded the budget,
/// nor stayed at one (a part is read while the one before it is sent).
fn uploads_stay_within_the_budget(server: Server, budget: usize) {
    uploads_stay_within_the_budget_with(server, budget, 12 << 20);
}

/// [`uploads_stay_within_the_budget`] with files of about `len` bytes.
fn uploads_stay_within_the_budget_with(server: Server, budget: usize, len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::parse(&server.location()).unwrap();
    let settings = S3Settings {
        concurrency: Some(budget),
        ..S3Settings::default()
    };
    let remote = Arc::new(Remote::open(&location, &settings, quick_retry()).unwrap());
    let files: Vec<(String, Vec<u8>)> = (0..4u8)
        .map(|i| {
            let len = len + usize::from(i) * 4097;
            let bytes: Vec<u8> = (0..len).map(|j| (j as u8) ^ i.wrapping_mul(37)).collect();
            (format!("packs/0{i}/upload-{i}"), bytes)
        })
        .collect();
    std::thread::scope(|s| {
        for (i, (key, bytes)) in files.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, bytes).unwrap();
            let remote = Arc::clone(&remote);
            s.spawn(move || remote.write_file(key, &path).unwrap());
        }
    });
    for (key, bytes) in &files {
        let back = remote.read(key).unwrap();
        assert!(
            back == *bytes,
            "{key}: {} bytes read back, {} sent",
            back.len(),
            bytes.len()
        );
    }
    let peak = remote.parts_peak();
    assert!(
        peak <= budget,
        "{peak} parts in memory at once, budget {budget}"
    );
    assert!(
        peak >= 2,
        "at most {peak} part in memory at once: none was read while another was sent"
    );
}

#[test]
fn s3_uploads_at_once_hold_at_most_the_budget_and_arrive_whole() {
    uploads_stay_within_the_budget(Server::S3, 5);
}

/// The smallest budget, 3: each upload of three parts takes all of it (OpenDAL sends
/// a part only when the next one arrives), so they take turns instead of waiting
/// for ever.
#[test]
fn s3_uploads_take_turns_in_the_smallest_budget() {
    uploads_stay_within_the_budget(Server::S3, 3);
}

/// Files of more parts than the budget: the reading thread waits for the parts sent
/// before, and the budget still holds.
#[test]
fn s3_uploads_of_more_parts_than_the_budget_wait_for_their_own() {
    uploads_stay_within_the_budget_with(Server::S3, 3, 22 << 20);
}

/// SFTP has no settings of its own: the default budget, 6 parts.
#[test]
fn sftp_uploads_at_once_hold_at_most_the_budget_and_arrive_whole() {
    uploads_stay_within_the_budget(Server::Sftp, 6);
}

/// A file that is empty or shorter than one part is one upload of one part (or none).
#[test]
fn s3_short_and_empty_files_upload_whole() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::parse(&Server::S3.location()).unwrap();
    let remote = Remote::open(&location, &S3Settings::default(), quick_retry()).unwrap();
    for (key, len) in [
        ("packs/00/empty", 0usize),
        ("packs/00/short", 1000),
        ("packs/00/five", 5 << 20),
    ] {
        let bytes: Vec<u8> = (0..len).map(|j| (j % 251) as u8).collect();
        let path = dir.path().join(key.replace('/', "-"));
        std::fs::write(&path, &bytes).unwrap();
        remote.write_file(key, &path).unwrap();
        assert_eq!(remote.read(key).unwrap(), bytes, "{key}");
        assert_eq!(remote.size(key).unwrap(), len as u64, "{key}");
    }
    assert!(remote.parts_peak() <= 1, "{}", remote.parts_peak());
}
