mod archive_route;
mod engine;
mod exit_codes;
mod quiesce_states;
mod restore_target;
mod stack;
mod trust;
mod volumes;
