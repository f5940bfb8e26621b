mod check;
mod check_oversize;
mod concurrency;
mod deep_trees;
mod forget_prune;
mod mirror;
mod stats_diff;
