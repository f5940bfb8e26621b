mod crash;
mod errors;
mod lost_writes;
mod trust;
