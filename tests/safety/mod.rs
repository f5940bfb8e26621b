mod crash;
mod errors;
mod index_version;
mod lost_writes;
mod read_order;
mod trust;
