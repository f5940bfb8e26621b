mod engine;
mod exit_codes;
mod restore_target;
mod stack;
mod trust;
mod volumes;
