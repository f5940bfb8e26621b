//! Docker volumes, the use case: snapshot one ([`snapshot`]) and restore one
//! ([`restore`]). This module sits above the pipeline (`ingest`), the restore
//! writers (`restore`) and the engine façade (`docker`), and drives them.

pub mod restore;
pub mod snapshot;
