mod crash;
mod damaged_index;
mod damaged_parent;
mod errors;
mod index_version;
mod lost_writes;
mod read_order;
mod trust;
