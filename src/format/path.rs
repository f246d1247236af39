//! Serverset paths: go.serversets' `/discovery/<environment>/<service>`
//! convention, or any absolute ZooKeeper path (Aurora's
//! `/aurora/<role>/<env>/<job>`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The environment part of go.serversets' path convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Environment {
    /// `local`
    Local,
    /// `staging`
    Staging,
    /// `prod`
    Production,
    /// `test`
    Test,
    /// Any other name (validated as one path component).
    Custom(String),
}

impl Environment {
    /// The path component for this environment.
    pub fn as_str(&self) -> &str {
        match self {
            Environment::Local => "local",
            Environment::Staging => "staging",
            Environment::Production => "prod",
            Environment::Test => "test",
            Environment::Custom(name) => name,
        }
    }
}

impl FromStr for Environment {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "local" => Environment::Local,
            "staging" => Environment::Staging,
            "prod" => Environment::Production,
            "test" => Environment::Test,
            other => {
                validate_component("environment", other)?;
                Environment::Custom(other.to_owned())
            }
        })
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated, absolute ZooKeeper path naming one serverset.
///
/// ```
/// use serversets::{Environment, ServerSetPath};
///
/// let path = ServerSetPath::discovery(Environment::Production, "users")?;
/// assert_eq!(path.as_str(), "/discovery/prod/users");
///
/// let aurora: ServerSetPath = "/aurora/www-data/prod/hello".parse()?;
/// assert_eq!(aurora.member_path("member_0000000007"), "/aurora/www-data/prod/hello/member_0000000007");
///
/// assert!(ServerSetPath::new("relative/path").is_err());
/// # Ok::<(), serversets::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerSetPath(String);

/// The root go.serversets puts every environment under.
pub const DISCOVERY_ROOT: &str = "/discovery";

impl ServerSetPath {
    /// Validates any absolute ZooKeeper path.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        validate_path(&path)?;
        Ok(ServerSetPath(path))
    }

    /// go.serversets' convention: `/discovery/<environment>/<service>`.
    pub fn discovery(environment: Environment, service: &str) -> Result<Self> {
        validate_component("environment", environment.as_str())?;
        validate_component("service", service)?;
        Ok(ServerSetPath(format!(
            "{DISCOVERY_ROOT}/{}/{service}",
            environment.as_str()
        )))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full path of a child znode of this set.
    pub fn member_path(&self, name: &str) -> String {
        if self.0 == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        }
    }

    /// The prefix given to ZooKeeper when creating a sequential member
    /// (`<path>/member_`).
    pub(crate) fn member_prefix(&self) -> String {
        self.member_path(crate::format::member::MEMBER_PREFIX)
    }
}

impl FromStr for ServerSetPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ServerSetPath::new(s)
    }
}

impl fmt::Display for ServerSetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ServerSetPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks a path the way ZooKeeper's `PathUtils.validatePath` does.
fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if !path.starts_with('/') {
        return bad("it must be absolute (start with '/')");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("it must not end with '/'");
    }
    for component in path[1..].split('/') {
        if let Err(reason) = check_component(component) {
            return bad(reason);
        }
    }
    Ok(())
}

/// Checks one name that becomes a single path component.
fn validate_component(what: &'static str, name: &str) -> Result<()> {
    if name.contains('/') {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason: "it must not contain '/'",
        });
    }
    check_component(name).map_err(|reason| Error::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    })
}

fn check_component(component: &str) -> std::result::Result<(), &'static str> {
    if component.is_empty() {
        return Err("it has an empty component ('//' or empty name)");
    }
    if component == "." || component == ".." {
        return Err("'.' and '..' are not allowed as components");
    }
    if component.chars().any(is_illegal_char) {
        return Err("it contains a character ZooKeeper does not allow");
    }
    Ok(())
}

/// The characters ZooKeeper rejects in paths.
fn is_illegal_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{e000}'..='\u{f8ff}'
        | '\u{fff0}'..='\u{ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_convention() {
        let p = ServerSetPath::discovery(Environment::Staging, "api").unwrap();
        assert_eq!(p.as_str(), "/discovery/staging/api");
        let custom: Environment = "canary".parse().unwrap();
        let p = ServerSetPath::discovery(custom, "api").unwrap();
        assert_eq!(p.as_str(), "/discovery/canary/api");
        assert_eq!(
            "prod".parse::<Environment>().unwrap(),
            Environment::Production
        );
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["", "a/b", ".", "..", "x\u{1}y", "bad\u{fff5}"] {
            let err = ServerSetPath::discovery(Environment::Test, name).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
        }
        assert!("a/b".parse::<Environment>().is_err());
        assert!("".parse::<Environment>().is_err());
    }

    #[test]
    fn accepts_any_absolute_path() {
        for p in [
            "/",
            "/a",
            "/aurora/www-data/prod/hello",
            "/x y/ü/member-set",
        ] {
            assert_eq!(ServerSetPath::new(p).unwrap().as_str(), p);
        }
        assert_eq!(
            ServerSetPath::new("/").unwrap().member_path("member_1"),
            "/member_1"
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for p in [
            "", "a", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/a\u{0}",
        ] {
            let err = ServerSetPath::new(p).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{p:?}");
            assert!(err.to_string().contains("invalid serverset path"));
        }
    }
}
