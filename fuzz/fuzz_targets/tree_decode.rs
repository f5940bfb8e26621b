//! Tree blobs come from pack files on disk, which may be damaged or hostile.
//!
//! Properties: `tree::decode` and `tree::decode_blob` never panic; whatever it accepts re-encodes to the same
//! bytes (the encoding is canonical, so a tree's id is a function of its content) and
//! decodes back to the same nodes; every accepted name is one safe path component.

#![no_main]

use cbsnap::tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A split tree (version 2) is a list of part ids: canonical too.
    if let Ok(tree::TreeBlob::Split(parts)) = tree::decode_blob(data) {
        assert_eq!(tree::encode_split(&parts), data, "split tree not canonical");
        return;
    }
    let Ok(nodes) = tree::decode(data) else {
        return;
    };
    for n in &nodes {
        assert!(
            tree::valid_name(&n.name),
            "decode accepted name {:?}",
            n.name
        );
    }
    let bytes = tree::encode(&nodes);
    let back = tree::decode(&bytes).expect("an encoded tree decodes");
    assert_eq!(back, nodes, "tree round trip changed the nodes");
    assert_eq!(bytes, data, "decode accepted a non-canonical encoding");
});
