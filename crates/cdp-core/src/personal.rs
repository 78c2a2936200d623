//! A wrapper for personal values that refuses to be printed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A personal value (e-mail, phone, name...). `Debug` and `Display` print `<personal>` so that a
/// stray `{:?}` in a log line or an error message cannot leak it; reading the value needs an
/// explicit [`Personal::expose`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Personal<T>(T);

impl<T> Personal<T> {
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Call sites are where personal data is handled: keep them few.
    pub const fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<personal>")
    }
}

impl<T> fmt::Display for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<personal>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let email = Personal::new("marker@example.com".to_string());
        assert_eq!(format!("{email:?} {email}"), "<personal> <personal>");
        assert_eq!(email.expose(), "marker@example.com");
    }
}
