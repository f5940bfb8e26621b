//! Prune (garbage collection): find what the snapshots still reference and remove the rest.
//!
//! `prune` runs in three steps, each in its own file:
//!
//! 1. [`reach`]: walk every snapshot's trees once (a tree shared by many snapshots is
//!    read once) and collect the referenced blob ids into a compact sorted set.
//! 2. [`plan`]: stream the index in id order next to that set and total, per pack,
//!    the bytes still used; decide which packs to delete (nothing used) and which to
//!    repack (more unused than the threshold).
//! 3. [`sweep`]: copy the used blobs of packs to repack into new packs, make those
//!    durable and indexed, and only then forget and delete the old packs.
//!
//! Memory follows restic's and kopia's most common complaint about their prune: it
//! must not grow with the whole index. The index is only ever streamed; what is held
//! is 8 bytes per *referenced* blob, a few dozen bytes per pack and per tree, and one
//! pack's used blobs while it is repacked. The whole operation runs under the
//! exclusive repository lock, so no snapshot can start referencing a blob between the
//! mark and the sweep.

pub mod plan;
pub mod reach;
pub mod sweep;

pub use plan::{plan, PackUse, Plan, PlanOptions};
pub use reach::{key, BlobKey, KeySet, SortedKeys};
pub use sweep::{prune, sweep, PruneReport};
