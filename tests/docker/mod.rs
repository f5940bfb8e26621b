mod engine;
mod stack;
mod trust;
mod volumes;
