//! Key files are kept on a path repository only: an encrypted repository reached
//! through a remote backend is refused with a typed error, before any passphrase is
//! asked or any index is created, and the same repository opens by its path.

use std::sync::Arc;

use cbsnap::crypto::keys::KdfParams;
use cbsnap::crypto::passphrase::Given;
use cbsnap::crypto::CryptoError;
use cbsnap::repo::{Access, OpenOptions};
use cbsnap::storage::Storage;
use cbsnap::{Error, Repository};

use super::Remote;

#[test]
fn an_encrypted_repository_through_a_remote_backend_is_refused_with_remote_keys() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("repo");
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        ..KdfParams::default()
    };
    Repository::init_encrypted(&root, "pw", &kdf).unwrap();

    let remote: Arc<dyn Storage> = Arc::new(Remote::new(&root));
    let opts = OpenOptions {
        cache_dir: Some(d.path().join("cache")),
        ..OpenOptions::default()
    };
    let pass = Given(zeroize::Zeroizing::new("pw".to_string()));
    match Repository::open_keyed(remote, Access::Read, &opts, &pass) {
        Err(Error::Crypto(CryptoError::RemoteKeys(_))) => {}
        Err(e) => panic!("expected RemoteKeys, got {e:?}"),
        Ok(_) => panic!("a remote encrypted repository was opened"),
    }
    assert!(
        !d.path().join("cache").exists(),
        "no cache made for a refused open"
    );

    let local: Arc<dyn Storage> = Arc::new(cbsnap::storage::Local::new(&root));
    let repo = Repository::open_keyed(local, Access::Read, &OpenOptions::default(), &pass).unwrap();
    assert!(repo.crypt().is_encrypted());
}
