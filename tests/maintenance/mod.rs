mod check;
mod check_oversize;
mod concurrency;
mod deep_trees;
mod forget_prune;
mod mirror;
mod mirror_damage;
mod stats_diff;
