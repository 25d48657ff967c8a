//! The addresses tasks on the bridge may not reach: what the node's firewall must hold for a
//! policy's `deniedEgressCIDRs`, written as one nftables script, and whether a `Bridge` run may
//! start while the firewall holds what it holds. Pure; the controller applies the script through
//! the Docker door and records what it enforced.

use ipnet::IpNet;

use crate::api::TaskRunPolicySpec;

/// What this node's firewall enforces of the policy's egress refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Egress {
    /// Nothing applied yet.
    #[default]
    NotYet,
    /// These ranges are refused (none: the agent's table is gone).
    Enforced(Vec<IpNet>),
    /// The last attempt failed, for this reason.
    Failed(String),
}

/// Why a `Bridge` run may not start under `policy` while the firewall holds `egress`; `None`
/// when it may.
pub fn unenforced(policy: &TaskRunPolicySpec, egress: &Egress) -> Option<String> {
    let denied = match policy.denied_egress() {
        Ok(denied) if denied.is_empty() => return None,
        Ok(denied) => denied,
        Err(problem) => return Some(problem),
    };
    match egress {
        Egress::Enforced(enforced) if *enforced == denied => None,
        Egress::Enforced(_) | Egress::NotYet => Some(
            "this node's agent has not yet applied the TaskRunPolicy's deniedEgressCIDRs to its firewall; the run starts once it has".into(),
        ),
        Egress::Failed(why) => Some(format!(
            "this node's agent cannot enforce the TaskRunPolicy's deniedEgressCIDRs: {why}"
        )),
    }
}

/// The nftables table (family `inet`) the agent of `node` owns.
pub fn table_of(node: &str) -> String {
    format!("taskrun-{node}")
}

/// The nftables script that makes `table` refuse packets from the bridge `interface` to the
/// `denied` ranges, whatever the table held before, in one transaction; with nothing denied it
/// only removes the table. Packets that cross the host (`forward`) and packets to the host's
/// own addresses (`input`) are both refused, before Docker's own rules.
pub fn nft_script(table: &str, interface: &str, denied: &[IpNet]) -> String {
    // `add` then `delete` removes the table whether or not it exists.
    let mut script = format!("add table inet {table}\ndelete table inet {table}\n");
    if denied.is_empty() {
        return script;
    }
    let elements = |v4: bool| {
        denied
            .iter()
            .filter(|net| matches!(net, IpNet::V4(_)) == v4)
            .map(IpNet::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set = |name: &str, kind: &str, elements: String| {
        let elements = if elements.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {elements} }};")
        };
        format!("  set {name} {{ type {kind}; flags interval; auto-merge;{elements} }}\n")
    };
    script.push_str(&format!("table inet {table} {{\n"));
    script.push_str(&set("denied4", "ipv4_addr", elements(true)));
    script.push_str(&set("denied6", "ipv6_addr", elements(false)));
    for hook in ["input", "forward"] {
        script.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority -1; policy accept;\n    iifname \"{interface}\" ip daddr @denied4 reject with icmpx admin-prohibited\n    iifname \"{interface}\" ip6 daddr @denied6 reject with icmpx admin-prohibited\n  }}\n"
        ));
    }
    script.push_str("}\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> TaskRunPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn nets(cidrs: &[&str]) -> Vec<IpNet> {
        cidrs.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn a_policy_that_denies_nothing_needs_no_firewall() {
        for yaml in ["{}", "deniedEgressCIDRs: []"] {
            assert_eq!(unenforced(&policy(yaml), &Egress::NotYet), None);
        }
    }

    #[test]
    fn a_bridge_run_waits_until_the_firewall_holds_exactly_what_the_policy_denies() {
        let denying = policy("deniedEgressCIDRs: [10.1.2.3/8, 169.254.169.254/32, 10.0.0.0/8]");
        assert_eq!(
            denying.denied_egress().unwrap(),
            nets(&["10.0.0.0/8", "169.254.169.254/32"]),
            "canonical, sorted, without repeats"
        );
        let enforced = Egress::Enforced(nets(&["10.0.0.0/8", "169.254.169.254/32"]));
        assert_eq!(unenforced(&denying, &enforced), None);
        let not_yet = unenforced(&denying, &Egress::NotYet).unwrap();
        assert!(not_yet.contains("not yet applied"), "{not_yet}");
        let stale = Egress::Enforced(nets(&["10.0.0.0/8"]));
        assert!(unenforced(&denying, &stale).is_some());
        let failed = unenforced(&denying, &Egress::Failed("nft said no".into())).unwrap();
        assert!(failed.ends_with("nft said no"), "{failed}");
    }

    #[test]
    fn what_is_not_a_cidr_holds_bridge_runs_with_its_name() {
        let broken = policy("deniedEgressCIDRs: [10.0.0.0/33]");
        let why = unenforced(&broken, &Egress::Enforced(Vec::new())).unwrap();
        assert!(why.contains("\"10.0.0.0/33\" is not a CIDR"), "{why}");
    }

    #[test]
    fn the_script_replaces_the_table_and_refuses_both_families_on_both_hooks() {
        let script = nft_script(
            "taskrun-n1",
            "br-taskrun",
            &nets(&["10.0.0.0/8", "fd00::/8"]),
        );
        assert!(script.starts_with(
            "add table inet taskrun-n1\ndelete table inet taskrun-n1\ntable inet taskrun-n1 {\n"
        ));
        assert!(script.contains("set denied4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.0.0.0/8 }; }"), "{script}");
        assert!(script.contains("set denied6 { type ipv6_addr; flags interval; auto-merge; elements = { fd00::/8 }; }"), "{script}");
        for hook in ["input", "forward"] {
            assert!(
                script.contains(&format!("type filter hook {hook} priority -1;")),
                "{script}"
            );
        }
        assert_eq!(
            script
                .matches("iifname \"br-taskrun\" ip daddr @denied4 reject")
                .count(),
            2
        );
    }

    #[test]
    fn with_nothing_denied_the_script_only_removes_the_table() {
        assert_eq!(
            nft_script("taskrun-n1", "docker0", &[]),
            "add table inet taskrun-n1\ndelete table inet taskrun-n1\n"
        );
    }

    #[test]
    fn an_empty_family_gets_an_empty_set() {
        let script = nft_script("t", "docker0", &nets(&["192.0.2.0/24"]));
        assert!(
            script.contains("set denied6 { type ipv6_addr; flags interval; auto-merge; }"),
            "{script}"
        );
    }
}
