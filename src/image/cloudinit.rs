//! The cloud-init format: a NoCloud seed (`meta-data`, `user-data`, `network-config`)
//! that turns a stock Debian cloud image into the node: packages installed with
//! their services held stopped, the rendered files and the agent written, and the
//! first-boot agent started. Written as a directory and as a `CIDATA` FAT volume.
//!
//! The agent is not in user-data (megabytes that cloud-init would parse at every
//! stage, and over any cloud's user-data limit): it is the file `pigsty` on the
//! seed volume, next to user-data, and runcmd installs it from there.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::model::Node;
use crate::plan::NodePlan;
use crate::render::RenderedFile;

const CIDATA_MIB: u64 = 64;

/// Units the packages would start on install; the agent starts them in order.
const HOLD: &str =
    "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d";

/// When the image already holds every package (an image made for the node, or a
/// machine without a mirror), apt is pointed at no sources until runcmd: the
/// packages module's `apt-get update` and `install` then need no network.
const OFFLINE_APT: &str = "/etc/apt/apt.conf.d/99pigsty-offline";

fn offline_apt_script(packages: &[String]) -> String {
    format!(
        "for p in {}; do dpkg-query -W -f='${{db:Status-Status}}' \"$p\" 2>/dev/null | grep -qx installed || exit 0; done; \
         mkdir -p /run/pigsty-offline/sources.list.d && : > /run/pigsty-offline/sources.list && \
         printf 'Dir::Etc::SourceList \"/run/pigsty-offline/sources.list\";\\nDir::Etc::SourceParts \"/run/pigsty-offline/sources.list.d\";\\n' > {OFFLINE_APT}",
        packages.join(" ")
    )
}

pub struct Seed {
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
    /// The agent executable, written as `pigsty` beside the three documents.
    pub agent: Vec<u8>,
}

/// runcmd's first command: install the agent from the seed volume (`CIDATA`, or
/// `cidata` as an ISO labels it), read-only, and fail loudly without one.
const INSTALL_AGENT: &str = "for d in /dev/disk/by-label/CIDATA /dev/disk/by-label/cidata; do \
    [ -e \"$d\" ] || continue; m=$(mktemp -d); mount -o ro \"$d\" \"$m\" || exit 1; \
    install -m 0755 -o root -g root \"$m/pigsty\" /usr/local/bin/pigsty; rc=$?; \
    umount \"$m\"; rmdir \"$m\"; exit $rc; done; \
    echo 'pigsty: no CIDATA volume carries the agent (the file pigsty beside user-data)' >&2; exit 1";

pub fn seed(
    node: &Node,
    plan: &NodePlan,
    files: &[RenderedFile],
    agent: &[u8],
) -> anyhow::Result<Seed> {
    let meta_data = format!(
        "instance-id: pigsty-{}\nlocal-hostname: {}\n",
        &plan.digest[..16],
        node.nodename
    );
    let identity = RenderedFile {
        path: crate::plan::IDENTITY_PATH.to_string(),
        mode: 0o644,
        owner: "root:root".to_string(),
        content: plan.identity().to_json(),
    };
    let write_files: Vec<Value> = files
        .iter()
        .chain(std::iter::once(&identity))
        .map(write_file)
        .collect();
    let services: Vec<&str> = plan
        .services
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "pigsty-firstboot.service")
        .filter(|s| crate::compile::boot_unit_of(s).is_none())
        .collect();
    let by = |target: &dyn Fn(&str) -> bool| -> Vec<&str> {
        plan.services
            .iter()
            .map(String::as_str)
            .filter(|s| crate::compile::boot_unit_of(s).is_some_and(target))
            .collect()
    };
    // Started now: those of multi-user.target and sockets.target (a boot reaches
    // both). Only enabled: those pulled in by a module service, which the agent starts
    // in order.
    let at_boot = |t: &str| t == "multi-user.target" || t == "sockets.target";
    let boot = by(&at_boot);
    let pulled = by(&|t| !at_boot(t));
    let mut runcmd = vec![
        json!(["sh", "-c", INSTALL_AGENT]),
        json!(["systemctl", "daemon-reload"]),
        json!([
            "sh",
            "-c",
            "pg_dropcluster --stop 15 main 2>/dev/null || true"
        ]),
        json!(["systemd-sysusers"]),
        json!(["systemd-tmpfiles", "--create"]),
        json!(["rm", "-f", "/usr/sbin/policy-rc.d", OFFLINE_APT]),
    ];
    if !services.is_empty() {
        let mut disable = vec!["systemctl", "disable"];
        disable.extend(services);
        runcmd.push(json!(disable));
    }
    if !boot.is_empty() {
        // Installed under policy-rc.d, so not running yet: started with their
        // rendered settings.
        let mut enable = vec!["systemctl", "enable", "--now", "--no-block"];
        enable.extend(boot);
        runcmd.push(json!(enable));
    }
    if !pulled.is_empty() {
        let mut enable = vec!["systemctl", "enable"];
        enable.extend(pulled);
        runcmd.push(json!(enable));
    }
    runcmd.push(json!([
        "systemctl",
        "enable",
        "--now",
        "--no-block",
        "pigsty-firstboot.service"
    ]));
    let config = json!({
        "hostname": node.nodename,
        "manage_etc_hosts": false,
        // bootcmd runs at every boot: these only on the first one of the instance.
        "bootcmd": [
            ["cloud-init-per", "instance", "pigsty-hold", "sh", "-c", HOLD],
            ["cloud-init-per", "instance", "pigsty-createcluster", "sh", "-c", "mkdir -p /etc/postgresql-common && printf 'create_main_cluster = false\\n' > /etc/postgresql-common/createcluster.conf"],
            ["cloud-init-per", "instance", "pigsty-offline-apt", "sh", "-c", offline_apt_script(&plan.packages)],
        ],
        "package_update": true,
        "packages": plan.packages,
        "write_files": write_files,
        "runcmd": runcmd,
    });
    // JSON is YAML: one serialiser, no quoting mistakes.
    let user_data = format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&config)?
    );
    Ok(Seed {
        meta_data,
        user_data,
        network_config: network_config(node),
        agent: agent.to_vec(),
    })
}

fn write_file(f: &RenderedFile) -> Value {
    use base64::Engine;
    json!({
        "path": f.path,
        "encoding": "b64",
        "content": base64::engine::general_purpose::STANDARD.encode(&f.content),
        "permissions": format!("{:04o}", f.mode),
        "owner": f.owner,
        // Owners such as postgres exist only once the packages are installed.
        "defer": true,
    })
}

/// Netplan v2, as cloud-init takes it: the inventory address on the first NIC.
fn network_config(node: &Node) -> String {
    let n = &node.node;
    let mut eth = json!({
        "match": { "name": "e*" },
        "addresses": [format!("{}/{}", node.ip, n.node_ip_prefix)],
    });
    // cloud-init (22.4) drops the whole interface when `nameservers` has no address.
    if !n.node_dns_servers.is_empty() {
        eth["nameservers"] = json!({ "addresses": n.node_dns_servers });
    }
    if let Some(gw) = n.node_gateway {
        eth["routes"] = json!([{ "to": "default", "via": gw.to_string() }]);
    }
    let doc = json!({ "version": 2, "ethernets": { "eth0": eth } });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// Write the seed as `dir/cloud-init/` and `dir/cidata.img` (FAT, label CIDATA).
pub fn write(dir: &Path, seed: &Seed) -> anyhow::Result<()> {
    let files: [(&str, &[u8]); 4] = [
        ("meta-data", seed.meta_data.as_bytes()),
        ("user-data", seed.user_data.as_bytes()),
        ("network-config", seed.network_config.as_bytes()),
        ("pigsty", &seed.agent),
    ];
    let sub = dir.join("cloud-init");
    std::fs::create_dir_all(&sub)?;
    for (name, bytes) in files {
        std::fs::write(sub.join(name), bytes).with_context(|| format!("writing {name}"))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sub.join("pigsty"), std::fs::Permissions::from_mode(0o755))?;
    }
    let path = dir.join("cidata.img");
    let mut img = super::rw_file(&path)?;
    img.set_len(CIDATA_MIB * 1024 * 1024)?;
    let opts = fatfs::FormatVolumeOptions::new()
        .volume_id(0x5049_4753)
        .volume_label(*b"CIDATA     ");
    fatfs::format_volume(&mut img, opts).context("formatting CIDATA")?;
    img.seek(SeekFrom::Start(0))?;
    let fs = fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new()).context("opening CIDATA")?;
    for (name, bytes) in files {
        let mut f = fs
            .root_dir()
            .create_file(name)
            .with_context(|| format!("CIDATA: {name}"))?;
        f.truncate()?;
        f.write_all(bytes)?;
    }
    fs.unmount().context("closing CIDATA")?;
    Ok(())
}
