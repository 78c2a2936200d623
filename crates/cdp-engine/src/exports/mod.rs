mod job;
pub use job::*;
