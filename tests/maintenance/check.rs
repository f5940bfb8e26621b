//! check: damage is found and traced to the pack, the snapshots and the files.

use std::fs::{self, File};

use cbsnap::pack::{self, BlobKind};

use crate::util::*;

struct Damaged {
    env: Env,
    a1: String,
    a2: String,
    b1: String,
}

/// Source `a` (two snapshots sharing big.bin) and source `b` (other.bin).
fn repo() -> Damaged {
    let env = Env::new();
    let a = env.path("a");
    write(&a, "big.bin", &random_bytes(1 << 20, 10));
    write(&a, "notes.txt", b"first");
    let a1 = env.snapshot(&a, "a");
    write(&a, "notes.txt", b"second");
    let a2 = env.snapshot(&a, "a");
    let b = env.path("b");
    write(&b, "sub/other.bin", &random_bytes(1 << 20, 11));
    let b1 = env.snapshot(&b, "b");
    Damaged { env, a1, a2, b1 }
}

/// The pack holding the largest data blob among `packs`, and that blob's entry.
fn largest_data_blob(repo: &std::path::Path, among: &[String]) -> (String, pack::BlobEntry) {
    let mut best: Option<(String, pack::BlobEntry)> = None;
    for id in among {
        let p = pack_path(repo, id);
        let f = File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        for e in pack::read_trailer(&f, len, &cbsnap::crypto::Crypt::Plain).unwrap() {
            let larger = match &best {
                Some(b) => e.raw_len > b.1.raw_len,
                None => true,
            };
            if e.kind == BlobKind::Data && larger {
                best = Some((id.clone(), e));
            }
        }
    }
    best.unwrap()
}

#[test]
fn a_flipped_byte_names_the_pack_the_snapshots_and_the_files() {
    let d = repo();
    let env = &d.env;
    env.ok(&["check", "--read-data"]);
    // a's first snapshot wrote the first pack; big.bin's chunks are in it.
    let first_pack: Vec<String> = {
        let all = packs(&env.repo());
        let mut v: Vec<(std::time::SystemTime, String)> = all
            .keys()
            .map(|id| {
                (
                    fs::metadata(pack_path(&env.repo(), id))
                        .unwrap()
                        .modified()
                        .unwrap(),
                    id.clone(),
                )
            })
            .collect();
        v.sort();
        vec![v[0].1.clone()]
    };
    let (pack_id, blob) = largest_data_blob(&env.repo(), &first_pack);
    let path = pack_path(&env.repo(), &pack_id);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(blob.offset + blob.stored_len as u64 / 2) as usize] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let out = env.run(&env.repo(), &["check", "--read-data"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("DAMAGE in pack {pack_id}")),
        "{text}"
    );
    assert!(text.contains("does not match its name"), "{text}");
    assert!(text.contains(&format!("a@{}", &d.a1[..8])), "{text}");
    assert!(text.contains(&format!("a@{}", &d.a2[..8])), "{text}");
    assert!(text.contains("big.bin"), "{text}");
    assert!(!text.contains(&d.b1[..8]), "{text}");
    assert!(!text.contains("notes.txt"), "{text}");

    let out = env.run(&env.repo(), &["--json", "check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["pack"], pack_id.as_str());
    assert_eq!(problems[0]["damaged_blobs"], 1);
    let snaps: Vec<&str> = problems[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.contains(&d.a1.as_str()) && snaps.contains(&d.a2.as_str()));
    assert_eq!(problems[0]["snapshots"][0]["paths"][0], "big.bin");

    // The same damage in a subset that covers every pack.
    let out = env.run(&env.repo(), &["check", "--read-data-subset", "100%"]);
    assert_eq!(out.status.code(), Some(1));
    // The untouched snapshot still restores.
    let to = env.restore(&env.repo(), "b@latest", "rb");
    assert_same_files(&to, &env.path("b"));
}

#[test]
fn a_deleted_pack_names_the_broken_snapshots() {
    let d = repo();
    let env = &d.env;
    // b's snapshot wrote exactly the packs that are newest.
    let newest = {
        let all = packs(&env.repo());
        all.keys()
            .max_by_key(|id| {
                fs::metadata(pack_path(&env.repo(), id))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .unwrap()
            .clone()
    };
    fs::remove_file(pack_path(&env.repo(), &newest)).unwrap();
    let out = env.run(&env.repo(), &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains(&format!("b@{}", &d.b1[..8])), "{text}");
    assert!(text.contains("no pack holds"), "{text}");
    assert!(
        !text.contains(&d.a1[..8]) && !text.contains(&d.a2[..8]),
        "{text}"
    );
    // A pack that is gone cannot be named: the advice says how to copy back every
    // pack the mirror has (it said to copy "the named packs", and named none).
    assert!(
        stderr(&out).contains("rsync -a --ignore-existing MIRROR/packs/"),
        "{}",
        stderr(&out)
    );
    // prune refuses to work on a repository with broken snapshots.
    let out = env.run(&env.repo(), &["prune"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing was removed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_damaged_trailer_and_a_damaged_snapshot_file_are_reported() {
    let d = repo();
    let env = &d.env;
    let all = packs(&env.repo());
    let (id, _) = all.iter().next().unwrap();
    let path = pack_path(&env.repo(), id);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - pack::FOOTER_LEN - 3] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let snap = env.repo().join("snapshots").join(&d.b1);
    let mut s = fs::read(&snap).unwrap();
    s.push(b' ');
    fs::write(&snap, &s).unwrap();
    let out = env.run(&env.repo(), &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("DAMAGE in pack {id}")), "{text}");
    assert!(text.contains("trailer"), "{text}");
    assert!(
        text.contains(&format!("snapshot file {}", snap.display())),
        "{text}"
    );
}

#[test]
fn orphans_are_information_not_damage() {
    let d = repo();
    let env = &d.env;
    env.ok(&["forget", "a", "--keep-last", "1"]);
    env.ok(&["forget", "b", "--keep-tag", "none-has-it"]);
    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("unreferenced packs"), "{out}");
    assert!(out.contains("no damage found"), "{out}");
    let v = env.json(&env.repo(), &["check"]);
    assert!(v["orphans"]["packs"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["problems"].as_array().unwrap().is_empty());
}
