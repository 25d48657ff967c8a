//! What a node's Docker daemon says of how it confines containers (`docker info`), and whether
//! that is enough to run a stranger's task on it.

use std::fmt;

/// The daemon's version, runtimes and confinement, as `docker info` reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonSetup {
    pub version: String,
    pub default_runtime: String,
    /// The runtimes the daemon knows, by name, with their binaries.
    pub runtimes: Vec<(String, String)>,
    /// The commit of the default runc, as the daemon reports it.
    pub runc_commit: String,
    /// The seccomp profile containers get: `default`, a custom profile's name, `unconfined`;
    /// `None` when the daemon (or its kernel) has no seccomp.
    pub seccomp: Option<String>,
    pub apparmor: bool,
    /// Containers run in a user namespace (`userns-remap`).
    pub userns: bool,
    pub rootless: bool,
    /// `1` or `2`, as the daemon reports it; empty when it does not say.
    pub cgroup_version: String,
}

impl DaemonSetup {
    /// Reads the confinement from `docker info`'s security options (`name=seccomp,profile=default`,
    /// `name=apparmor`, `name=userns`, ...).
    pub fn with_security_options(mut self, options: &[String]) -> Self {
        for option in options {
            let fields: Vec<(&str, &str)> = option
                .split(',')
                .filter_map(|field| field.split_once('='))
                .collect();
            let value = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            match value("name") {
                Some("seccomp") => {
                    self.seccomp = Some(value("profile").unwrap_or("default").into())
                }
                Some("apparmor") => self.apparmor = true,
                Some("userns") => self.userns = true,
                Some("rootless") => self.rootless = true,
                _ => {}
            }
        }
        self
    }

    /// Why no task may run on this daemon, if none may: containers would get no seccomp filter,
    /// so every system call the kernel has is open to the task.
    pub fn refusal(&self) -> Option<String> {
        match self.seccomp.as_deref() {
            None => Some(
                "the Docker daemon runs containers without seccomp (its kernel or build has none)"
                    .into(),
            ),
            Some("unconfined") => Some(
                "the Docker daemon runs containers with seccomp unconfined (--seccomp-profile=unconfined)"
                    .into(),
            ),
            Some(_) => None,
        }
    }
}

impl fmt::Display for DaemonSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runtimes: Vec<String> = self
            .runtimes
            .iter()
            .map(|(name, path)| format!("{name}={path}"))
            .collect();
        write!(
            f,
            "Docker {}, default runtime {} (runc commit {}), runtimes [{}], seccomp {}, AppArmor {}, userns {}, rootless {}, cgroup v{}",
            self.version,
            self.default_runtime,
            self.runc_commit,
            runtimes.join(" "),
            self.seccomp.as_deref().unwrap_or("none"),
            self.apparmor,
            self.userns,
            self.rootless,
            self.cgroup_version,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(options: &[&str]) -> DaemonSetup {
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        DaemonSetup::default().with_security_options(&options)
    }

    #[test]
    fn a_daemon_is_refused_only_without_a_seccomp_filter() {
        let default = setup(&[
            "name=apparmor",
            "name=seccomp,profile=default",
            "name=cgroupns",
        ]);
        assert_eq!(default.seccomp.as_deref(), Some("default"));
        assert!(default.apparmor && !default.userns);
        assert_eq!(default.refusal(), None);
        let custom = setup(&[
            "name=seccomp,profile=/etc/docker/strict.json",
            "name=userns",
        ]);
        assert_eq!(custom.refusal(), None);
        assert!(custom.userns);
        let unconfined = setup(&["name=seccomp,profile=unconfined"]);
        assert!(unconfined.refusal().unwrap().contains("unconfined"));
        assert!(
            setup(&["name=apparmor"]).refusal().is_some(),
            "no seccomp at all"
        );
    }
}
