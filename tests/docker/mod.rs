mod engine;
mod exit_codes;
mod stack;
mod trust;
mod volumes;
