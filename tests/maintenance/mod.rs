mod check;
mod check_oversize;
mod concurrency;
mod forget_prune;
mod mirror;
mod stats_diff;
