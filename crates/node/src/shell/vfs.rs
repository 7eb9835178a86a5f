//! A pod's files: the small read-only file system `cat` and `ls` see in an echo pod.
//!
//! A real container sees its image's files plus what the kubelet mounts: `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf` (written by the kubelet for every pod), the volumes of its
//! `volumeMounts` (Secrets, ConfigMaps, the projected service-account token under
//! `/var/run/secrets/kubernetes.io/serviceaccount`, downward API files). The echo pods have no image,
//! so their file system is exactly the kubelet's part, built when the container starts
//! ([`crate::shell::files`] builds the contents).

use std::collections::BTreeMap;

use bytes::Bytes;

/// A file-system error, worded as coreutils words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such path.
    #[error("No such file or directory")]
    NotFound,
    /// A directory where a file was expected.
    #[error("Is a directory")]
    IsDir,
    /// A file where a directory was expected.
    #[error("Not a directory")]
    NotDir,
}

#[derive(Clone, Debug)]
enum Node {
    Dir,
    File(Bytes),
}

/// One directory entry, as `ls` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name within its directory.
    pub name: String,
    /// Whether it is a directory.
    pub dir: bool,
    /// The file's size (0 for directories).
    pub size: usize,
}

/// A read-only tree of files keyed by absolute, normalised path.
#[derive(Clone, Debug)]
pub struct Vfs {
    nodes: BTreeMap<String, Node>,
}

impl Default for Vfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Vfs {
    /// Just `/`.
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_owned(), Node::Dir);
        Self { nodes }
    }

    /// Adds (or replaces) a file, creating its parent directories.
    pub fn add_file(&mut self, path: &str, content: impl Into<Bytes>) {
        let path = normalize("/", path);
        self.add_dir(parent(&path));
        self.nodes.insert(path, Node::File(content.into()));
    }

    /// Adds a directory and its parents.
    pub fn add_dir(&mut self, path: &str) {
        let path = normalize("/", path);
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            self.nodes.entry(current.clone()).or_insert(Node::Dir);
        }
    }

    /// A file's content.
    pub fn read(&self, path: &str) -> Result<&Bytes, FsError> {
        match self.nodes.get(path) {
            Some(Node::File(content)) => Ok(content),
            Some(Node::Dir) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Whether `path` is a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some(Node::Dir))
    }

    /// A directory's entries, sorted by name (a file lists as itself).
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FsError> {
        match self.nodes.get(path) {
            None => Err(FsError::NotFound),
            Some(Node::File(content)) => Ok(vec![Entry {
                name: path.rsplit('/').next().unwrap_or(path).to_owned(),
                dir: false,
                size: content.len(),
            }]),
            Some(Node::Dir) => {
                let prefix = if path == "/" {
                    "/".to_owned()
                } else {
                    format!("{path}/")
                };
                Ok(self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(p, _)| p.starts_with(&prefix))
                    .filter(|(p, _)| p.len() > prefix.len() && !p[prefix.len()..].contains('/'))
                    .map(|(p, node)| Entry {
                        name: p[prefix.len()..].to_owned(),
                        dir: matches!(node, Node::Dir),
                        size: match node {
                            Node::File(c) => c.len(),
                            Node::Dir => 0,
                        },
                    })
                    .collect())
            }
        }
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `path` made absolute against `cwd`, with `.`, `..` and repeated slashes resolved.
pub fn normalize(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_operations() {
        let mut fs = Vfs::new();
        fs.add_file("/etc/hostname", "web-1\n");
        fs.add_file("/var/run/secrets/kubernetes.io/serviceaccount/token", "t");
        fs.add_dir("/tmp");
        assert_eq!(fs.read("/etc/hostname").expect("file"), "web-1\n");
        assert_eq!(fs.read("/etc"), Err(FsError::IsDir));
        assert_eq!(fs.read("/nope"), Err(FsError::NotFound));
        let root: Vec<String> = fs
            .list("/")
            .expect("root")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(root, ["etc", "tmp", "var"]);
        let sa = fs
            .list("/var/run/secrets/kubernetes.io/serviceaccount")
            .expect("dir");
        assert_eq!(
            sa,
            vec![Entry {
                name: "token".into(),
                dir: false,
                size: 1
            }]
        );
        assert!(fs.is_dir("/var/run"));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("/", "etc/../etc//hosts"), "/etc/hosts");
        assert_eq!(normalize("/var/run", ".."), "/var");
        assert_eq!(normalize("/", "../.."), "/");
        assert_eq!(normalize("/tmp", "/etc/./hosts"), "/etc/hosts");
    }
}
