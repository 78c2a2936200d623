pub(crate) mod system;
