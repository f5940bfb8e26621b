mod fixture;
mod golden;
