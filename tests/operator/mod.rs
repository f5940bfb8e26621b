mod location;
mod ops;
mod ops_scripts;
mod run_hooks;
