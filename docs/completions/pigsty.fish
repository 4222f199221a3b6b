# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pigsty_global_optspecs
    string join \n i/inventory= pki= v/verbose h/help V/version
end

function __fish_pigsty_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pigsty_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pigsty_using_subcommand
    set -l cmd (__fish_pigsty_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pigsty -n "__fish_pigsty_needs_command" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_needs_command" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_needs_command" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_needs_command" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "inventory" -d 'Validate or list the inventory'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "plan" -d 'Show the compiled plan of one node (or every node)'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "render" -d 'Write a node\'s overlay tree: configs, units and /etc/pigsty/node.json'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "agent" -d 'Run on the node: the first-boot join, and where it stands'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "status" -d 'The fleet\'s join state, as the nodes reported it to etcd (/pigsty/nodes/)'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "diff" -d 'What an inventory change does to each node (database objects, configuration, or a new image) and the order a rollout takes the nodes in'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "rollout" -d 'Take the inventory to every node it changes, in a safe order, over SSH: database objects and configuration without a reboot, a new root by an A/B update'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "build-image" -d 'Build bootable images of one node (or all nodes) into OUT/<nodename>/'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "serve" -d 'Boot server for the inventory: iPXE scripts by MAC that install each node\'s disk from its build (formats pxe and raw) and then boot it from disk, the builds\' artifacts by sha256 (roots and bundles for `agent update` too), and with --dhcp Debian\'s dnsmasq as proxy DHCP and TFTP. Runs until SIGINT or SIGTERM'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "lab" -d 'Boot the inventory as qemu VMs on this machine (default: the built-in lab.yml)'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "pki" -d 'The fleet CA and node certificates, in files/pki beside the inventory'
complete -c pigsty -n "__fish_pigsty_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -f -a "check" -d 'Validate the inventory: exit 0 when valid, 2 when not (every error is listed)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -f -a "list" -d 'One row per node: ip, nodename, roles, modules'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -f -a "passwords" -d 'Strong random passwords for every Pigsty default password the inventory still uses (as Pigsty\'s `configure -g`), as YAML for `all.vars`, with the lines that set a default explicitly'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and not __fish_seen_subcommand_from check list passwords help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from passwords" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from passwords" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from passwords" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from passwords" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from passwords" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the inventory: exit 0 when valid, 2 when not (every error is listed)'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "list" -d 'One row per node: ip, nodename, roles, modules'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "passwords" -d 'Strong random passwords for every Pigsty default password the inventory still uses (as Pigsty\'s `configure -g`), as YAML for `all.vars`, with the lines that set a default explicitly'
complete -c pigsty -n "__fish_pigsty_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -l role -d 'Any name of the node: pg instance (pg-test-1), etcd member (etcd-1), MinIO member (minio-1), infra name (infra-1), redis node, nodename, or IP' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -l all -d 'Plan every node of the inventory'
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -l json -d 'Machine-readable JSON on stdout (an array with --all)'
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand plan" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -l role -d 'Any name of the node (see `plan --role`)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -l out -d 'Directory to write the tree into (replaced whole, only once complete)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -l all -d 'Render every node, each into DIR/<nodename>/'
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand render" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "firstboot" -d 'Join this node into its clusters, in order (run once by pigsty-firstboot.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "status" -d 'Where the first-boot join stands on this node'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "tune" -d 'Size the machine-dependent settings (PostgreSQL memory, workers and WAL, the kernel\'s shared memory) for this machine: run at every boot by pigsty-tune.service'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "update" -d 'Write a new shared root and node bundle into the A/B slot that is not running and make it the next boot, on trial: it is kept once the node is healthy on it, else the node falls back to the slot it runs now by itself'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "apply" -d 'Take in a new node bundle now, without a reboot, when every file that differs is one a running node can take in (configuration, database objects): the changed files are bound over the running ones, the services that read them reload or restart, the join runs again; the slot that is not running gets the same root and the new bundle for the next boot'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "install" -d 'Write this node\'s whole A/B disk (`disk.raw`) onto its disk, from its image booted over the network (pigsty-install.service runs it with --from-cmdline, as `pigsty serve` asks). A disk that holds a node\'s data is kept unless a reinstall is asked; the image\'s partition tables are written last, so a cut install never leaves a disk that boots half an image'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "haproxy-check" -d 'Run every health check of this node\'s HAProxy now and set each server\'s health from its answer at once (through the admin socket), rather than after `rise` checks: what `pigsty rollout` asks of every member after a switchover'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "bless" -d 'Keep this boot\'s slot if it is on trial and the node is healthy within the trial\'s bound, else reboot so that the other slot boots (run at every boot by pigsty-bless.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "pre-init" -d 'Make this node\'s root from its slot and start systemd: the first process of a node booted from an A/B slot (the kernel runs it through /usr/lib/pigsty/init). Not for interactive use'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and not __fish_seen_subcommand_from firstboot status tune update apply install haproxy-check bless pre-init help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -l root -d 'The node\'s root directory: node.json, the state and env overrides are under it' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -l timeout -d 'Give up any single wait (a peer, a leader, a healthy service) after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -l request-timeout -d 'Give up one request to a peer after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from firstboot" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -l root -d 'The node\'s root directory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -l json -d 'The state file as JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -l root -d 'The node\'s root directory: node.json and the rendered configs are under it; the kernel is set only when it is `/`' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from tune" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l root -d 'The shared root: an http(s) URL or a file, named `<sha256>.ext4` as `build-image --format bundle` writes it under `_roots/` (else give --root-sha256). Not fetched when the running slot holds the same root; omitted, the running slot\'s root (a change of the node\'s files only)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l root-sha256 -d 'The root\'s sha256, when its name does not say it' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l bundle -d 'The node bundle (`<out>/<node>/bundle.tar` of `build-image --format bundle`)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l bundle-sha256 -d 'The bundle\'s sha256, checked when given' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l tries -d 'Boots the new slot gets before systemd-boot gives up on it' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l trial-timeout -d 'How long each boot of the new slot may take to become healthy before it reboots (the bound `agent bless` keeps)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l request-timeout -d 'Give up one HTTP request (the whole transfer) after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -l reboot -d 'Reboot into the new slot once it is written'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l bundle -d 'The node bundle (`<out>/<node>/bundle.tar` of `build-image --format bundle`)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l bundle-sha256 -d 'The bundle\'s sha256, checked when given' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l tries -d 'Boots the slot written for the next boot gets before systemd-boot gives up on it' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l trial-timeout -d 'How long that boot may take to become healthy' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l timeout -d 'Bound of each wait of the join that runs again' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l request-timeout -d 'Give up one HTTP request (the whole transfer) after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l check -d 'Only compare with the running bundle: print what differs and what would take it in (or that only a boot would), change nothing'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from apply" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l image -d 'The disk image: an http(s) URL or a file (`disk.raw` of `build-image --format raw`)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l sha256 -d 'The image\'s sha256, checked before the disk is made bootable' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l disk -d 'The disk to write. Default: the first non-removable disk' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l map -d 'The image\'s block map (`disk.map.json` beside `disk.raw`): only its pieces of data are fetched, the rest of the disk is zeroed by the disk' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l map-sha256 -d 'The block map\'s sha256' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l report -d 'POST what was done (JSON) to this URL' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l request-timeout -d 'Give up one HTTP request (the whole transfer) after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l from-cmdline -d 'Read what to do from the kernel command line (`pigsty.install=URL pigsty.install.sha256=HEX [pigsty.install.map=URL pigsty.install.map.sha256=HEX] [pigsty.install.report=URL] [pigsty.disk=DEV] [pigsty.reinstall]`); nothing to do when it names no install'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l reinstall -d 'Write it even over a disk that holds a pigsty-data partition'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l reboot -d 'Reboot once the disk is written (or kept)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l config -d 'HAProxy\'s configuration (its `listen` sections with HTTP checks are read)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l socket -d 'HAProxy\'s admin socket' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l timeout -d 'Each check\'s bound, seconds' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l until-primary -d 'First wait until SERVER (an instance, as HAProxy names its servers) answers 200 to its `/primary` check, asked every half second, then check every server: a rollout starts this on each member just before a switchover to SERVER' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l within -d 'How long --until-primary waits at most, seconds' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -l json -d 'Print what was set as JSON'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from haproxy-check" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -l timeout -d 'Seconds to wait for the node to become healthy when the trial\'s entry names no bound (pigsty.trial=SECS)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -l dry-run -d 'Say what would be done; change nothing and never reboot'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from bless" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from pre-init" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from pre-init" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from pre-init" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from pre-init" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from pre-init" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "firstboot" -d 'Join this node into its clusters, in order (run once by pigsty-firstboot.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "status" -d 'Where the first-boot join stands on this node'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "tune" -d 'Size the machine-dependent settings (PostgreSQL memory, workers and WAL, the kernel\'s shared memory) for this machine: run at every boot by pigsty-tune.service'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "update" -d 'Write a new shared root and node bundle into the A/B slot that is not running and make it the next boot, on trial: it is kept once the node is healthy on it, else the node falls back to the slot it runs now by itself'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "apply" -d 'Take in a new node bundle now, without a reboot, when every file that differs is one a running node can take in (configuration, database objects): the changed files are bound over the running ones, the services that read them reload or restart, the join runs again; the slot that is not running gets the same root and the new bundle for the next boot'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "install" -d 'Write this node\'s whole A/B disk (`disk.raw`) onto its disk, from its image booted over the network (pigsty-install.service runs it with --from-cmdline, as `pigsty serve` asks). A disk that holds a node\'s data is kept unless a reinstall is asked; the image\'s partition tables are written last, so a cut install never leaves a disk that boots half an image'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "haproxy-check" -d 'Run every health check of this node\'s HAProxy now and set each server\'s health from its answer at once (through the admin socket), rather than after `rise` checks: what `pigsty rollout` asks of every member after a switchover'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "bless" -d 'Keep this boot\'s slot if it is on trial and the node is healthy within the trial\'s bound, else reboot so that the other slot boots (run at every boot by pigsty-bless.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "pre-init" -d 'Make this node\'s root from its slot and start systemd: the first process of a node booted from an A/B slot (the kernel runs it through /usr/lib/pigsty/init). Not for interactive use'
complete -c pigsty -n "__fish_pigsty_using_subcommand agent; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -l endpoint -d 'etcd client URL to read from (repeatable). Default: the inventory\'s etcd members' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand status" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -l against -d 'Compare with the inventory the nodes were built from (an earlier version of this one; its file name is not a change), offline. Default: with the image each node reports running to etcd (/pigsty/nodes/<name>)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -l endpoint -d 'etcd client URL to read the nodes\' reports from (repeatable; without --against). Default: the inventory\'s etcd members' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -l exit-code -d 'Exit 1 when anything changes, 0 when nothing does (as `git diff --exit-code`)'
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand diff" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l parallel -d 'Run up to N PostgreSQL clusters (or other nodes) side by side; etcd and MinIO members always go one at a time' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l identity -d 'The operator\'s SSH private key (its public half in node_admin_pk_list)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l ssh-port -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l listen -d 'Where the artifact server that nodes fetch bundles and roots from listens' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l out -d 'Where bundles and roots are built' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l extra-tree -d 'As `build-image --extra-tree` (the nodes\' images must have been built with it)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l max-lag -d 'A replica is back when it streams with at most this lag' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l timeout -d 'Bound of each node\'s step and of each wait after it' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l endpoint -d 'etcd client URL to read the nodes\' reports from (repeatable). Default: the inventory\'s etcd members' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l dry-run -d 'Build, ask each node what changes and print the plan; change nothing'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l offline -d 'Build from the layer cache alone'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand rollout" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l role -d 'Any name of the node (see `plan --role`)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l format -d 'Output formats (repeat or comma-separate)' -r -f -a "rootfs\t'rootfs.tar.zst: sorted entries, clamped mtimes, numeric owners'
raw\t'disk.raw, the A/B layout (docs/updates.md): the ESP with systemd-boot and slot A\'s entry; root A (the shared root, read-only at run time) and bundle A (the node\'s own files); empty root B and bundle B for updates; a data partition holding every piece of state, grown to the end of the drive at first boot. With vmlinuz, initrd.img and cmdline (slot A\'s) for a direct kernel boot'
qcow2\t'disk.qcow2: the A/B disk as a qcow2 whose backing file is the shared base disk of its root, `_roots/<sha256>.ab.raw` in `--out` (one per package set): the node\'s own file holds its bundle and its boot entry, about 1 MiB. Ship both, or flatten it: `qemu-img convert -O qcow2 disk.qcow2 whole.qcow2`. The base disk is cached (`$PIGSTY_CACHE/ab/`, hard-linked into `--out` when they share a filesystem). With cmdline (slot A\'s), and the root\'s kernel and initrd beside its base disk, `_roots/<sha256>.vmlinuz` and `.initrd.img`'
cloud-init\t'cloud-init/ (NoCloud meta-data, user-data, network-config) and cidata.img, for a stock Debian cloud image'
pxe\t'pxe/: vmlinuz, initrd.img (live-boot), root.squashfs, boot.ipxe, dnsmasq.conf, and by-mac/<mac>.ipxe when the inventory gives node_mac'
bundle\t'bundle.tar, the node\'s own files, and the shared root it goes over, `_roots/<sha256>.ext4` in `--out`: one per package set, however many nodes share it (see docs/updates.md). What `pigsty agent update` takes'"
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l out -d 'Output directory; each node\'s artifacts go to OUT/<nodename>/' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l extra-tree -d 'Copy this host directory over each node\'s root, last (repeatable): e.g. a MinIO-compatible server at DIR/usr/local/bin/minio, which Debian does not ship' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l all -d 'Build every node of the inventory'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l offline -d 'Build from the layer cache alone; fail naming any missing layer'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -l allow-default-passwords -d 'Build even though the inventory keeps Pigsty\'s published default passwords (refused otherwise; `pigsty inventory passwords` makes strong ones)'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pigsty -n "__fish_pigsty_using_subcommand build-image" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l out -d 'Where `build-image` wrote the builds (OUT/<nodename>/manifest.json)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l listen -d 'Address and port of the HTTP server' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l advertise -d 'The address nodes reach the server at. Default: this machine\'s address on the route to each node' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l interface -d 'The interface of the provisioning network (with --dhcp)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l dhcp-pool -d 'With --dhcp-addresses, addresses FIRST-LAST for machines the inventory does not know, so that they are shown the "unknown machine" script (without it they get no address at all)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l reinstall -d 'Install NODE\'s disk again at its next network boot, even over its data' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l dhcp -d 'Start dnsmasq as proxy DHCP and TFTP on --interface (beside the network\'s own DHCP server)'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l dhcp-addresses -d 'With --dhcp, give the inventory\'s machines (node_mac) their addresses too, for a network with no DHCP server of its own; no other machine gets one'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l check -d 'Print what each node would get and exit'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -l json -d 'Machine-readable JSON on stdout (with --check)'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand serve" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "up" -d 'Build missing images, boot every node and wait until every agent is done'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "status" -d 'Each node\'s VM, join state, Patroni role and REST API, etcd health and haproxy\'s primary, and whether the node is healthy'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "down" -d 'Stop every VM of the lab and remove its network namespace'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "reimage" -d 'Reimage a node: power it off, fresh disk from its image, boot it (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "kill" -d 'Power-cut a node (SIGKILL its VM)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "start" -d 'Boot a node from its current disk (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "wait" -d 'Wait until every agent reports done'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "logs" -d 'Print a node\'s journal (kept on the host, also after the VM is gone)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "ssh" -d 'Run a command on a node as its admin user, over SSH with the lab\'s operator key (which `lab up` adds to every node\'s node_admin_pk_list)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "update" -d 'Give a node its new image from the inventory given: its bundle (and root, when its packages changed) built and copied to it, `pigsty agent update --reboot` run there, then a wait until it reports the new slot kept'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "pxe" -d 'Reinstall a node over the network, as bare metal with `pigsty serve`: an empty disk, the NIC booted first (qemu\'s iPXE), the node\'s build (raw and pxe) served from inside the lab\'s network with dnsmasq giving it its address; waits until its installer reports the disk written and it boots from it'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "apply" -d 'Take a node\'s new bundle, built from the inventory, in without a reboot: copied to it and `pigsty agent apply` run there (refused when it needs a boot)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "diff" -d 'Which lab nodes run another image than the inventory compiles to (as the lab builds it: its CA, its operator key), from the plan digests they report'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "rollout" -d '`pigsty rollout` on the lab, from inside its network: the lab\'s operator key, CA, layer cache and extra trees; bundles built into <lab>/updates'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and not __fish_seen_subcommand_from up status down reimage kill start wait logs ssh update pxe apply diff rollout help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l extra-tree -d 'Copy this host directory over every node\'s root (repeatable): MinIO members need a server at DIR/usr/local/bin/minio' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l accel -d 'How qemu runs the guests' -r -f -a "auto\t'KVM when /dev/kvm answers a probe, TCG otherwise'
kvm\t''
tcg\t''"
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l memory -d 'Memory of each VM, MiB' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l cpus -d 'vCPUs of each VM' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l timeout -d 'Give up waiting for the agents after SECS, naming each node and step not done' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l pxe -d 'Boot NODE from the network onto an empty disk (as `lab pxe` does) instead of from its image\'s disk (repeatable; a node already running is left as it is)' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -l purge -d 'Also remove the VMs\' disks (consoles, journals and images stay)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from reimage" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from kill" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -l timeout -d 'Give up after SECS, naming each node and step not done' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from logs" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from ssh" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l tries -d 'Boots the new slot gets before the node falls back' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l trial-timeout -d 'How long each boot of the new slot may take to become healthy' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l timeout -d 'Give up waiting for the node to keep its new slot after SECS' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l bundle -d 'Ship this node bundle (over the node\'s running root) instead of one built from the inventory: a hand-made or a deliberately broken one, say' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l no-reboot -d 'Write the slot but do not reboot into it (nor wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -l no-wait -d 'Reboot into the new slot but do not wait for it to be kept'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -l timeout -d 'Give up after SECS without the install reported and the node back on its disk' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -l stranger -d 'Also boot a machine of no node (an empty disk, a MAC the inventory does not give) from the network beside it: it must be shown the "unknown machine" script and given nothing else'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -l json -d 'Print what was done as JSON'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from pxe" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from apply" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from diff" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l dir -d 'The lab\'s directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB, else ~/.cache/pigsty/lab' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l parallel -d 'Run up to N PostgreSQL clusters (or other nodes) side by side' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l timeout -d 'Bound of each node\'s step and of each wait after it' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l dry-run -d 'Build, ask each node what changes and print the plan; change nothing'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from rollout" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "up" -d 'Build missing images, boot every node and wait until every agent is done'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "status" -d 'Each node\'s VM, join state, Patroni role and REST API, etcd health and haproxy\'s primary, and whether the node is healthy'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "down" -d 'Stop every VM of the lab and remove its network namespace'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "reimage" -d 'Reimage a node: power it off, fresh disk from its image, boot it (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "kill" -d 'Power-cut a node (SIGKILL its VM)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "start" -d 'Boot a node from its current disk (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait until every agent reports done'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "logs" -d 'Print a node\'s journal (kept on the host, also after the VM is gone)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "ssh" -d 'Run a command on a node as its admin user, over SSH with the lab\'s operator key (which `lab up` adds to every node\'s node_admin_pk_list)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "update" -d 'Give a node its new image from the inventory given: its bundle (and root, when its packages changed) built and copied to it, `pigsty agent update --reboot` run there, then a wait until it reports the new slot kept'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "pxe" -d 'Reinstall a node over the network, as bare metal with `pigsty serve`: an empty disk, the NIC booted first (qemu\'s iPXE), the node\'s build (raw and pxe) served from inside the lab\'s network with dnsmasq giving it its address; waits until its installer reports the disk written and it boots from it'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "apply" -d 'Take a node\'s new bundle, built from the inventory, in without a reboot: copied to it and `pigsty agent apply` run there (refused when it needs a boot)'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "diff" -d 'Which lab nodes run another image than the inventory compiles to (as the lab builds it: its CA, its operator key), from the plan digests they report'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "rollout" -d '`pigsty rollout` on the lab, from inside its network: the lab\'s operator key, CA, layer cache and extra trees; bundles built into <lab>/updates'
complete -c pigsty -n "__fish_pigsty_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -f -a "list" -d 'The CA and every node certificate issued: names, dates'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -f -a "issue" -d 'Issue a node a new key pair and certificate (creating the CA if there is none)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and not __fish_seen_subcommand_from list issue help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -l role -d 'The node: its nodename, IP or any name it answers to' -r
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -s i -l inventory -d 'Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in singleton inventory' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -l pki -d 'The fleet PKI directory (CA and node certificates). Default: files/pki beside the inventory file (in the current directory for the built-in inventory)' -r -F
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -s h -l help -d 'Print help'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from issue" -s V -l version -d 'Print version'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "list" -d 'The CA and every node certificate issued: names, dates'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "issue" -d 'Issue a node a new key pair and certificate (creating the CA if there is none)'
complete -c pigsty -n "__fish_pigsty_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "inventory" -d 'Validate or list the inventory'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "plan" -d 'Show the compiled plan of one node (or every node)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "render" -d 'Write a node\'s overlay tree: configs, units and /etc/pigsty/node.json'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "agent" -d 'Run on the node: the first-boot join, and where it stands'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "status" -d 'The fleet\'s join state, as the nodes reported it to etcd (/pigsty/nodes/)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "diff" -d 'What an inventory change does to each node (database objects, configuration, or a new image) and the order a rollout takes the nodes in'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "rollout" -d 'Take the inventory to every node it changes, in a safe order, over SSH: database objects and configuration without a reboot, a new root by an A/B update'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "build-image" -d 'Build bootable images of one node (or all nodes) into OUT/<nodename>/'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "serve" -d 'Boot server for the inventory: iPXE scripts by MAC that install each node\'s disk from its build (formats pxe and raw) and then boot it from disk, the builds\' artifacts by sha256 (roots and bundles for `agent update` too), and with --dhcp Debian\'s dnsmasq as proxy DHCP and TFTP. Runs until SIGINT or SIGTERM'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "lab" -d 'Boot the inventory as qemu VMs on this machine (default: the built-in lab.yml)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "pki" -d 'The fleet CA and node certificates, in files/pki beside the inventory'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and not __fish_seen_subcommand_from inventory plan render agent status diff rollout build-image serve lab pki help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from inventory" -f -a "check" -d 'Validate the inventory: exit 0 when valid, 2 when not (every error is listed)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from inventory" -f -a "list" -d 'One row per node: ip, nodename, roles, modules'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from inventory" -f -a "passwords" -d 'Strong random passwords for every Pigsty default password the inventory still uses (as Pigsty\'s `configure -g`), as YAML for `all.vars`, with the lines that set a default explicitly'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "firstboot" -d 'Join this node into its clusters, in order (run once by pigsty-firstboot.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "status" -d 'Where the first-boot join stands on this node'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "tune" -d 'Size the machine-dependent settings (PostgreSQL memory, workers and WAL, the kernel\'s shared memory) for this machine: run at every boot by pigsty-tune.service'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "update" -d 'Write a new shared root and node bundle into the A/B slot that is not running and make it the next boot, on trial: it is kept once the node is healthy on it, else the node falls back to the slot it runs now by itself'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "apply" -d 'Take in a new node bundle now, without a reboot, when every file that differs is one a running node can take in (configuration, database objects): the changed files are bound over the running ones, the services that read them reload or restart, the join runs again; the slot that is not running gets the same root and the new bundle for the next boot'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "install" -d 'Write this node\'s whole A/B disk (`disk.raw`) onto its disk, from its image booted over the network (pigsty-install.service runs it with --from-cmdline, as `pigsty serve` asks). A disk that holds a node\'s data is kept unless a reinstall is asked; the image\'s partition tables are written last, so a cut install never leaves a disk that boots half an image'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "haproxy-check" -d 'Run every health check of this node\'s HAProxy now and set each server\'s health from its answer at once (through the admin socket), rather than after `rise` checks: what `pigsty rollout` asks of every member after a switchover'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "bless" -d 'Keep this boot\'s slot if it is on trial and the node is healthy within the trial\'s bound, else reboot so that the other slot boots (run at every boot by pigsty-bless.service)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from agent" -f -a "pre-init" -d 'Make this node\'s root from its slot and start systemd: the first process of a node booted from an A/B slot (the kernel runs it through /usr/lib/pigsty/init). Not for interactive use'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "up" -d 'Build missing images, boot every node and wait until every agent is done'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "status" -d 'Each node\'s VM, join state, Patroni role and REST API, etcd health and haproxy\'s primary, and whether the node is healthy'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "down" -d 'Stop every VM of the lab and remove its network namespace'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "reimage" -d 'Reimage a node: power it off, fresh disk from its image, boot it (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "kill" -d 'Power-cut a node (SIGKILL its VM)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "start" -d 'Boot a node from its current disk (no wait)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "wait" -d 'Wait until every agent reports done'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "logs" -d 'Print a node\'s journal (kept on the host, also after the VM is gone)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "ssh" -d 'Run a command on a node as its admin user, over SSH with the lab\'s operator key (which `lab up` adds to every node\'s node_admin_pk_list)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "update" -d 'Give a node its new image from the inventory given: its bundle (and root, when its packages changed) built and copied to it, `pigsty agent update --reboot` run there, then a wait until it reports the new slot kept'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "pxe" -d 'Reinstall a node over the network, as bare metal with `pigsty serve`: an empty disk, the NIC booted first (qemu\'s iPXE), the node\'s build (raw and pxe) served from inside the lab\'s network with dnsmasq giving it its address; waits until its installer reports the disk written and it boots from it'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "apply" -d 'Take a node\'s new bundle, built from the inventory, in without a reboot: copied to it and `pigsty agent apply` run there (refused when it needs a boot)'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "diff" -d 'Which lab nodes run another image than the inventory compiles to (as the lab builds it: its CA, its operator key), from the plan digests they report'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "rollout" -d '`pigsty rollout` on the lab, from inside its network: the lab\'s operator key, CA, layer cache and extra trees; bundles built into <lab>/updates'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "list" -d 'The CA and every node certificate issued: names, dates'
complete -c pigsty -n "__fish_pigsty_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "issue" -d 'Issue a node a new key pair and certificate (creating the CA if there is none)'
