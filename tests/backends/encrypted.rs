//! Key files live in the repository's storage: an encrypted repository made and opened
//! through a remote backend (the path backend seen as remote) works without any local
//! path, and the same repository opens by its path too.

use std::sync::Arc;

use cbsnap::crypto::keys::KdfParams;
use cbsnap::crypto::passphrase::Given;
use cbsnap::crypto::CryptoError;
use cbsnap::repo::{Access, OpenOptions};
use cbsnap::storage::Storage;
use cbsnap::{Error, Repository};

use super::Remote;

#[test]
fn an_encrypted_repository_is_made_and_opened_through_a_remote_backend() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("repo");
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        ..KdfParams::default()
    };
    let remote: Arc<dyn Storage> = Arc::new(Remote::new(&root));
    Repository::init_encrypted_in(remote.clone(), "pw", &kdf).unwrap();
    assert_eq!(
        remote.list("keys/").unwrap().len(),
        1,
        "one key file, in keys/"
    );

    let opts = OpenOptions {
        cache_dir: Some(d.path().join("cache")),
        ..OpenOptions::default()
    };
    let pass = |p: &str| Given(zeroize::Zeroizing::new(p.to_string()));
    {
        let repo =
            Repository::open_keyed(remote.clone(), Access::Append, &opts, &pass("pw")).unwrap();
        assert!(repo.crypt().is_encrypted());
        super::snapshot(&repo, "t", &[("f", b"secret".to_vec())]).unwrap();
    }
    match Repository::open_keyed(remote.clone(), Access::Read, &opts, &pass("wrong")) {
        Err(Error::Crypto(CryptoError::WrongPassphrase { tried: 1, .. })) => {}
        Err(e) => panic!("expected WrongPassphrase, got {e:?}"),
        Ok(_) => panic!("a wrong passphrase opened the repository"),
    }

    let local: Arc<dyn Storage> = Arc::new(cbsnap::storage::Local::new(&root));
    let repo =
        Repository::open_keyed(local, Access::Read, &OpenOptions::default(), &pass("pw")).unwrap();
    assert_eq!(super::read_back(&repo, "t", "f"), b"secret");
}
