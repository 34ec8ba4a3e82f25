//! The engine seam is shared by every gateway and consumer: it lives in the
//! `castle-link` crate and is re-exported here so gateway code keeps saying
//! `crate::link`.
pub use castle_link::*;
