//! Virtual paths: what the client sees, always absolute and normalised, never above `/`.
//!
//! Normalisation is purely lexical: empty components (`//`) and `.` are dropped, `..` removes
//! the previous component and stays at `/` when there is none. Nothing is decoded: `%2e%2e`
//! or `..\..` are ordinary names. The server resolves the result beneath its docroot
//! directory fd (openat2 `RESOLVE_IN_ROOT`), which is what actually keeps symlinks inside;
//! this type only guarantees the text never climbs above `/`.

use std::fmt;

/// An absolute, normalised virtual path (`/`, `/a`, `/a/b`; never a trailing slash except
/// the root, never `.`, `..` or empty components).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

impl Default for VirtualPath {
    fn default() -> Self {
        Self::root()
    }
}

impl VirtualPath {
    /// `/`.
    pub fn root() -> Self {
        VirtualPath("/".to_string())
    }

    /// Normalise an absolute or relative path against `/`.
    pub fn new(path: &str) -> Self {
        Self::root().join(path)
    }

    /// Resolve `arg` (absolute, or relative to `self`) and normalise it.
    ///
    /// ```
    /// use gridos_ftp::proto::VirtualPath;
    /// let cwd = VirtualPath::new("/pub/data");
    /// assert_eq!(cwd.join("../x//./y/").as_str(), "/pub/x/y");
    /// assert_eq!(cwd.join("/../../etc/passwd").as_str(), "/etc/passwd");
    /// assert_eq!(cwd.join("../../../..").as_str(), "/");
    /// ```
    pub fn join(&self, arg: &str) -> VirtualPath {
        let mut parts: Vec<&str> = Vec::new();
        if !arg.starts_with('/') {
            parts.extend(self.components());
        }
        for c in arg.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let mut s = String::with_capacity(arg.len() + self.0.len() + 1);
        for p in &parts {
            s.push('/');
            s.push_str(p);
        }
        if s.is_empty() {
            s.push('/');
        }
        VirtualPath(s)
    }

    /// The path text, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (empty for the root): what to pass to openat2 with
    /// the docroot fd (use `.` for the empty string).
    pub fn relative(&self) -> &str {
        self.0.strip_prefix('/').unwrap_or(&self.0)
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent (the root's parent is the root).
    pub fn parent(&self) -> VirtualPath {
        self.join("..")
    }

    /// The last component (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The path quoted for a 257 reply: in double quotes, embedded quotes doubled (RFC 959
    /// appendix II).
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VirtualPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let root = VirtualPath::root();
        for (arg, want) in [
            ("", "/"),
            ("..", "/"),
            ("../../..", "/"),
            ("//a///b//", "/a/b"),
            ("./a/./b/.", "/a/b"),
            ("a/../../b", "/b"),
            ("%2e%2e/%2E%2E/etc", "/%2e%2e/%2E%2E/etc"),
            ("..\\..\\x", "/..\\..\\x"),
            ("...", "/..."),
            ("a b/ c ", "/a b/ c "),
        ] {
            assert_eq!(root.join(arg).as_str(), want, "{arg:?}");
        }
        let cwd = VirtualPath::new("/a/b");
        assert_eq!(cwd.join("c").as_str(), "/a/b/c");
        assert_eq!(cwd.join("/c").as_str(), "/c");
        assert_eq!(cwd.parent().as_str(), "/a");
        assert_eq!(root.parent(), root);
        assert_eq!(cwd.relative(), "a/b");
        assert_eq!(root.relative(), "");
        assert_eq!(cwd.file_name(), Some("b"));
        assert_eq!(root.file_name(), None);
        assert_eq!(
            VirtualPath::new("/say \"hi\"").quoted(),
            "\"/say \"\"hi\"\"\""
        );
    }
}
