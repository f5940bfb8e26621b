//! Warming the kernel's caches ahead of a directory walk.
//!
//! [`super::dir::walk`] is one thread, and on a cold cache each `getdents` and each
//! `stat` of it waits for one read from the disk: the walk runs at one request at a
//! time, where a disk (or a virtual one) serves several at once. A few threads list
//! and `stat` the same tree a little ahead of the walk, in about its order (depth
//! first, names in byte order; the threads share one stack of directories, so only
//! about), and throw away what they learn: the kernel keeps
//! the directories and inodes they read, and the walk finds them there. The walk's
//! own checks (every entry opened beneath its parent, never through a symlink) are
//! untouched; what runs here only ever reads metadata, opens directories with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` below the walk's root
//! descriptor, and does nothing where the kernel lacks `openat2`.
//!
//! How far ahead is bounded by entries, [`LEAD`], also within one directory: a tree
//! larger than the kernel's caches must not have its first inodes pushed out before
//! the walk gets to them. A directory the walk leaves out ([`LeaveOut`]: the
//! repository) is not listed either. What the threads hold is bounded too, for a
//! hostile tree of long names and wide directories: [`QUEUE_BYTES`] of queued paths
//! and [`MAX_NAMES`] names per thread. Stopping takes effect between system calls: the
//! end of a walk waits for a `getdents` or `stat` in flight.
//! On a warm cache the threads only repeat the walk's `stat`s on the other core (an
//! unchanged snapshot of 24,559 files took 0.38–0.43 s instead of 0.31–0.36 s): they
//! stop once [`WARM_STREAK`] directories in a row were listed at cache speed.
//! Parallel walks of the same kind: `fd`'s and ripgrep's `ignore::WalkParallel`;
//! the measurements are in `docs/BENCHMARKS.md` ("Issue 9, fifth pass").

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::dir::LeaveOut;

/// Threads that list and `stat` ahead of the walk. They wait on the disk, not on a
/// core: four keep four requests in flight.
pub const THREADS: usize = 4;

/// Entries the threads may `stat` beyond the ones the walk has reached.
pub const LEAD: u64 = 16384;

/// Bytes of directory paths waiting to be listed, at most: past that, the rest of the
/// tree is left to the walk alone. A path is up to `PATH_MAX` bytes (a hostile tree
/// can make every one that long), so the bound is on bytes, not on directories.
const QUEUE_BYTES: usize = 1 << 20;

/// Entries of one directory a thread lists at most (the walk lists them all): each
/// thread holds the names of the directory it lists, at most 255 bytes each.
const MAX_NAMES: usize = 4096;

/// Directories in a row listed at cache speed after which the threads stop: the
/// tree is in the kernel's caches and reading ahead would only cost a core.
pub const WARM_STREAK: usize = 16;

/// What listing a directory costs per entry (open, `getdents`, `stat`) at most when
/// nothing is read from the disk: a cached `stat` takes 1–3 µs, one that reads an
/// inode from a disk 50 µs or more.
const WARM_PER_ENTRY: Duration = Duration::from_micros(10);

/// How long a thread that is [`LEAD`] entries ahead sleeps before it looks again.
const PAUSE: Duration = Duration::from_millis(1);

/// The shared state of one walk's read-ahead: the walk calls [`Prefetch::walked`]
/// for each entry it reaches; [`Prefetch::run`] is the body of each thread.
pub struct Prefetch<'fd> {
    root: BorrowedFd<'fd>,
    lead: u64,
    warm_streak: usize,
    /// Entries the walk has reached.
    walked: AtomicU64,
    /// Entries the threads have `stat`ed.
    statted: AtomicU64,
    /// Directories the threads have listed.
    listed: AtomicU64,
    stop: AtomicBool,
    /// Directories listed at cache speed since the last one that was not.
    warm: AtomicUsize,
    queue: Mutex<Queue>,
    more: Condvar,
    /// Directories the walk leaves out: not listed here either.
    leave_out: LeaveOut,
}

/// Directories waiting to be listed.
struct Queue {
    /// Paths relative to the root (empty for the root), the next one last.
    dirs: Vec<CString>,
    /// Bytes of the paths in `dirs`.
    bytes: usize,
    /// Threads listing a directory now (which may queue more).
    busy: usize,
}

impl<'fd> Prefetch<'fd> {
    /// Read-ahead of the tree below the open directory `root`, at most `lead` entries
    /// past the walk, stopping after `warm_streak` directories in a row listed at
    /// cache speed ([`LEAD`] and [`WARM_STREAK`] outside tests).
    pub fn new(root: BorrowedFd<'fd>, lead: u64, warm_streak: usize) -> Prefetch<'fd> {
        Prefetch {
            root,
            lead,
            warm_streak,
            walked: AtomicU64::new(0),
            statted: AtomicU64::new(0),
            listed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            warm: AtomicUsize::new(0),
            queue: Mutex::new(Queue {
                dirs: vec![CString::default()],
                bytes: 0,
                busy: 0,
            }),
            more: Condvar::new(),
            leave_out: LeaveOut::default(),
        }
    }

    /// The same read-ahead, not listing the directories of `leave_out`.
    pub fn leaving_out(self, leave_out: &LeaveOut) -> Prefetch<'fd> {
        Prefetch {
            leave_out: leave_out.clone(),
            ..self
        }
    }

    /// The walk reached one more entry.
    pub fn walked(&self) {
        self.walked.fetch_add(1, Ordering::Relaxed);
    }

    /// The walk is over: the threads return after the call they are in.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.more.notify_all();
    }

    /// Entries `stat`ed so far by all threads.
    pub fn statted(&self) -> u64 {
        self.statted.load(Ordering::Relaxed)
    }

    /// Directories listed so far by all threads.
    pub fn listed(&self) -> u64 {
        self.listed.load(Ordering::Relaxed)
    }

    /// One thread's work: take the next directory, list it, `stat` its entries in
    /// name order, queue its subdirectories; until the tree is done, [`stop`], or
    /// [`WARM_STREAK`] directories in a row came from the cache.
    ///
    /// [`stop`]: Prefetch::stop
    pub fn run(&self) {
        while let Some(dir) = self.next() {
            let listed = self.list(&dir);
            // A directory that could not be listed says nothing about the cache.
            if let Some((entries, _, spent)) = &listed {
                if *spent <= WARM_PER_ENTRY * (*entries as u32 + 1) {
                    if self.warm.fetch_add(1, Ordering::Relaxed) + 1 >= self.warm_streak {
                        self.stop();
                    }
                } else {
                    self.warm.store(0, Ordering::Relaxed);
                }
            }
            let subdirs = listed.map(|(_, s, _)| s).unwrap_or_default();
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            // The first names are walked first: keep those that fit the budget, and
            // push them reversed, the queue being a stack.
            let mut fit = 0;
            for d in &subdirs {
                if q.bytes + d.as_bytes().len() > QUEUE_BYTES {
                    break;
                }
                q.bytes += d.as_bytes().len();
                fit += 1;
            }
            q.dirs.extend(subdirs.into_iter().take(fit).rev());
            q.busy -= 1;
            drop(q);
            self.more.notify_all();
        }
    }

    /// Wait while the threads are `lead` entries ahead of the walk; false once
    /// stopped. Adds the time waited to `waited`.
    fn within_lead(&self, waited: &mut Duration) -> bool {
        let start = Instant::now();
        let within = loop {
            if self.stop.load(Ordering::Relaxed) {
                break false;
            }
            if self.statted() < self.walked.load(Ordering::Relaxed) + self.lead {
                break true;
            }
            std::thread::sleep(PAUSE);
        };
        *waited += start.elapsed();
        within
    }

    /// The next directory to list, once the threads are less than `lead` entries
    /// ahead; `None` when stopped or when no directory is left and none is being
    /// listed (which could queue more).
    fn next(&self) -> Option<CString> {
        loop {
            // Waiting here, between directories, is not part of any listing's time.
            if !self.within_lead(&mut Duration::default()) {
                return None;
            }
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(dir) = q.dirs.pop() {
                q.bytes -= dir.as_bytes().len();
                q.busy += 1;
                return Some(dir);
            }
            if q.busy == 0 {
                return None;
            }
            // Another thread is listing and may queue more; wake on its news, or look
            // again soon (a stop's notification can fall between check and wait).
            drop(
                self.more
                    .wait_timeout(q, PAUSE)
                    .unwrap_or_else(|p| p.into_inner()),
            );
        }
    }

    /// List the directory `rel` (the first [`MAX_NAMES`] entries `getdents` returns,
    /// which in a larger directory need not be the first the walk visits) and `stat` each
    /// entry in name order, never more than `lead` past the walk: how many entries it
    /// listed, the paths of its subdirectories (those shorter than `PATH_MAX`, up to
    /// [`QUEUE_BYTES`] of paths) in name order, and the time the system calls took
    /// (not the time held at the lead, which says nothing about the cache). `None` for
    /// a directory that cannot be opened or listed: the walk reports it.
    fn list(&self, rel: &CString) -> Option<(usize, Vec<CString>, Duration)> {
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        let fd = self.open(rel)?;
        let dir = rustix::fs::Dir::read_from(&fd).ok()?;
        self.listed.fetch_add(1, Ordering::Relaxed);
        let mut names: Vec<CString> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != c"." && e.file_name() != c"..")
            .take(MAX_NAMES)
            .map(|e| e.file_name().to_owned())
            .collect();
        names.sort();
        let entries = names.len();
        let mut subdirs = Vec::new();
        let mut bytes = 0;
        for name in names {
            if !self.within_lead(&mut waited) {
                break;
            }
            let st = rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW);
            self.statted.fetch_add(1, Ordering::Relaxed);
            // The casts widen `st_dev` and `st_ino`, whose types differ between
            // architectures, as `FileStat` does.
            #[allow(clippy::unnecessary_cast)]
            let is_dir = st.is_ok_and(|st| {
                FileType::from_raw_mode(st.st_mode) == FileType::Directory
                    && !self.leave_out.holds(st.st_dev as u64, st.st_ino as u64)
            });
            let len = rel.as_bytes().len() + 1 + name.as_bytes().len();
            if is_dir && len < libc::PATH_MAX as usize && bytes + len <= QUEUE_BYTES {
                let mut path = Vec::with_capacity(len);
                if !rel.as_bytes().is_empty() {
                    path.extend_from_slice(rel.as_bytes());
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                bytes += path.len();
                subdirs.push(CString::new(path).expect("names hold no NUL"));
            }
        }
        Some((entries, subdirs, start.elapsed().saturating_sub(waited)))
    }

    /// Open `rel` below the root, never through a symlink and never outside it;
    /// `None` where that cannot be done (also on a kernel without `openat2`).
    fn open(&self, rel: &CString) -> Option<OwnedFd> {
        let path = if rel.as_bytes().is_empty() {
            c"."
        } else {
            rel.as_c_str()
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        rustix::fs::openat2(self.root, path, flags, Mode::empty(), resolve).ok()
    }
}

/// Run `walk` with [`THREADS`] threads reading ahead of it below `root`, not into the
/// directories of `leave_out`; `walk` gets the [`Prefetch`] to report each entry it
/// reaches. The threads are stopped and joined before this returns, whatever `walk`
/// returns.
pub fn around<T>(
    root: BorrowedFd<'_>,
    leave_out: &LeaveOut,
    walk: impl FnOnce(&Prefetch<'_>) -> T,
) -> T {
    let prefetch = Prefetch::new(root, LEAD, WARM_STREAK).leaving_out(leave_out);
    run_around(&prefetch, walk)
}

/// [`around`] with a lead of `lead` entries, never stopping for a warm cache.
#[cfg(test)]
fn around_with<T>(root: BorrowedFd<'_>, lead: u64, walk: impl FnOnce(&Prefetch<'_>) -> T) -> T {
    run_around(&Prefetch::new(root, lead, usize::MAX), walk)
}

/// [`THREADS`] threads running `prefetch` while `walk` runs; stopped and joined
/// before this returns.
fn run_around<'fd, T>(prefetch: &Prefetch<'fd>, walk: impl FnOnce(&Prefetch<'fd>) -> T) -> T {
    std::thread::scope(|s| {
        for i in 0..THREADS {
            let p = prefetch;
            // A thread that cannot be started, or that fails, is read-ahead lost, not
            // an error of the walk (the scope would pass a thread's panic on to it).
            let _ = std::thread::Builder::new()
                .name(format!("prefetch-{i}"))
                .spawn_scoped(s, move || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.run()));
                });
        }
        /// Stops the threads also when `walk` unwinds, so the scope can join them.
        struct Stop<'a, 'fd>(&'a Prefetch<'fd>);
        impl Drop for Stop<'_, '_> {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        let _stop = Stop(prefetch);
        walk(prefetch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn open(dir: &std::path::Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    /// `dirs` directories of `files` files each below `root`.
    fn tree(root: &std::path::Path, dirs: usize, files: usize) {
        for d in 0..dirs {
            let sub = root.join(format!("d{d:03}"));
            std::fs::create_dir(&sub).unwrap();
            for f in 0..files {
                std::fs::write(sub.join(format!("f{f}")), b"x").unwrap();
            }
        }
    }

    #[test]
    fn stats_every_entry_of_the_tree_and_nothing_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        tree(outside.path(), 3, 10);
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 4, 5);
        std::os::unix::fs::symlink(outside.path(), t.path().join("d000/away")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("away")).unwrap();
        let fd = open(t.path());
        let p = Prefetch::new(fd.as_fd(), u64::MAX / 2, usize::MAX);
        std::thread::scope(|s| {
            s.spawn(|| p.run());
            s.spawn(|| p.run());
        });
        // 4 directories, 20 files, 2 symlinks: the 30 entries outside are not reached.
        assert_eq!(p.statted(), 26);
        assert_eq!(p.listed(), 5);
    }

    #[test]
    fn lists_nothing_of_a_directory_the_walk_leaves_out() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 4, 5);
        let mut leave_out = LeaveOut::default();
        leave_out.dir(&t.path().join("d001"), "the repository");
        let fd = open(t.path());
        let p = Prefetch::new(fd.as_fd(), u64::MAX / 2, usize::MAX).leaving_out(&leave_out);
        p.run();
        // 4 directories and the files of 3: d001 is `stat`ed, not listed.
        assert_eq!(p.statted(), 4 + 15);
        assert_eq!(p.listed(), 4);
    }

    #[test]
    fn opens_nothing_through_a_symlink_or_outside_the_root() {
        // What keeps a directory swapped for a symlink during the walk from taking
        // the threads elsewhere: the open itself, not the `stat` before it.
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 1, 0);
        std::os::unix::fs::symlink(outside.path(), t.path().join("away")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("d000/away")).unwrap();
        std::os::unix::fs::symlink("..", t.path().join("d000/up")).unwrap();
        let fd = open(t.path());
        let p = Prefetch::new(fd.as_fd(), u64::MAX / 2, usize::MAX);
        let opens = |rel: &str| p.open(&CString::new(rel).unwrap()).is_some();
        assert!(opens("") && opens("d000"));
        for rel in ["away", "d000/away", "d000/up", "..", "d000/../..", "/tmp"] {
            assert!(!opens(rel), "{rel} was opened");
        }
    }

    #[test]
    fn holds_a_bounded_number_of_long_paths_whatever_the_tree() {
        // A chain of directories with 250-byte names, ~3 KB of path, then 1,000
        // directories in the deepest: 3 MB of paths to queue, against a 1 MiB budget.
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().to_path_buf();
        for i in 0..12 {
            deep.push(format!("{i:x}").repeat(250));
        }
        std::fs::create_dir_all(&deep).unwrap();
        for i in 0..1000 {
            std::fs::create_dir(deep.join(format!("s{i:04}"))).unwrap();
        }
        let fd = open(t.path());
        let p = Prefetch::new(fd.as_fd(), u64::MAX / 2, usize::MAX);
        p.run();
        let path = 12 * 251 + 5;
        let queued = (QUEUE_BYTES / path) as u64;
        assert_eq!(p.statted(), 12 + 1000);
        // The root, the chain, and as many of the 1,000 as fit the budget.
        assert_eq!(p.listed(), 1 + 12 + queued, "a path is {path} bytes");
    }

    #[test]
    fn stays_within_its_lead_of_the_walk_and_stops_when_told() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 20, 50);
        let fd = open(t.path());
        let p = Prefetch::new(fd.as_fd(), 100, usize::MAX);
        std::thread::scope(|s| {
            s.spawn(|| p.run());
            // Until the walk moves, the thread stops at the lead, also in the middle
            // of a directory.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(p.statted(), 100);
            for _ in 0..300 {
                p.walked();
            }
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(p.statted(), 400);
            p.stop();
        });
        assert!(p.statted() < 20 * 50 + 20);
    }

    #[test]
    fn a_walk_that_ends_early_or_panics_is_not_kept_waiting_for_its_threads() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 50, 20);
        let fd = open(t.path());
        // Threads held at their lead by a walk that never moves would sleep forever
        // if nobody stopped them; the scope would then never return.
        let ended = around_with(fd.as_fd(), 10, |p| {
            std::thread::sleep(Duration::from_millis(50));
            p.statted()
        });
        // The lead, and at most one more per thread that passed its check at once.
        assert!(
            (10..=10 + THREADS as u64).contains(&ended),
            "statted {ended}"
        );
        let panicked = std::panic::catch_unwind(|| {
            around_with(fd.as_fd(), 10, |_| -> () {
                std::thread::sleep(Duration::from_millis(50));
                panic!("the walk failed")
            })
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn a_tree_in_the_cache_is_left_to_the_walk() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path(), 100, 10);
        let fd = open(t.path());
        // Listed once, so the second pass finds every directory in the cache.
        let first = Prefetch::new(fd.as_fd(), u64::MAX / 2, usize::MAX);
        first.run();
        assert_eq!(first.statted(), 100 + 100 * 10);
        let p = Prefetch::new(fd.as_fd(), u64::MAX / 2, 4);
        p.run();
        // The root and three directories (four in a row), perhaps a few more on a machine so loaded
        // that a listing of the cache took 10 µs an entry: far from all 100.
        let statted = p.statted();
        assert!(
            (100 + 3 * 10..100 + 50 * 10).contains(&statted),
            "statted {statted}"
        );
    }
}
