//! Text files generated into bundles: the systemd unit and the install / uninstall scripts
//! (POSIX sh, run as root on the board).

use super::target::Target;

/// Quote `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The service unit: runs `speck run` from `<prefix>/current` with the board defaults.
/// `DynamicUser` gives the service its own unprivileged user without creating one at install
/// time (so an image written by `speck flash` needs no passwd edits); `video` opens cameras.
pub fn systemd_unit(t: &Target) -> String {
    let p = &t.service.prefix;
    let d = &t.defaults;
    let mut args = vec![
        format!("--model {p}/current/share/speck/{}", d.model),
        format!("--source {}", t.service.source),
        format!("--serve {}", t.service.listen),
        format!("--threads {}", d.threads),
        format!("--conf {}", d.conf),
    ];
    if d.fp16 {
        args.push("--fp16".into());
    }
    match d.tile {
        Some([w, h]) => args.push(format!("--tile {w}x{h} --overlap {}", d.overlap)),
        None => args.push("--no-tile".into()),
    }
    format!(
        "[Unit]
Description=speck tiny-object detector ({desc})
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={p}/current/bin/speck run {args}
WorkingDirectory={p}/current
DynamicUser=yes
SupplementaryGroups=video
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
",
        desc = t.description,
        args = args.join(" "),
    )
}

/// `install.sh`: verify the release, copy it to `<prefix>/releases/<release>`, switch
/// `<prefix>/current` atomically, install the unit, restart the service.
pub fn install_sh(t: &Target) -> String {
    format!(
        r#"#!/bin/sh
# Install this speck release ({name}): check MANIFEST, copy to PREFIX/releases/RELEASE, switch
# PREFIX/current atomically (ln -sfn + mv -T), install the systemd unit, restart the service.
# Usage: sudo ./install.sh [--no-restart]
set -eu
PREFIX={prefix}
RESTART={restart}
INSTALL_UNIT={unit}
here=$(cd "$(dirname "$0")" && pwd)
restart=1
for a in "$@"; do
    case "$a" in
        --no-restart) restart=0 ;;
        *) echo "usage: install.sh [--no-restart]" >&2; exit 2 ;;
    esac
done
release=$(cat "$here/RELEASE")
if ! (cd "$here" && sha256sum -c --quiet --strict MANIFEST); then
    echo "install.sh: checksum mismatch, nothing installed" >&2
    exit 1
fi
dest="$PREFIX/releases/$release"
mkdir -p "$PREFIX/releases"
if [ ! -d "$dest" ]; then
    rm -rf "$dest.partial"
    cp -R "$here" "$dest.partial"
    mv "$dest.partial" "$dest"
fi
ln -sfn "releases/$release" "$PREFIX/current.new"
mv -T "$PREFIX/current.new" "$PREFIX/current"
if [ "$INSTALL_UNIT" = 1 ]; then
    install -m 0644 "$dest/systemd/speck.service" /etc/systemd/system/speck.service
    systemctl daemon-reload
    systemctl enable speck.service
fi
echo "installed $release: $PREFIX/current -> releases/$release"
if [ "$restart" = 1 ]; then
    sh -c "$RESTART"
fi
"#,
        name = t.name,
        prefix = sh_quote(&t.service.prefix),
        restart = sh_quote(&t.service.restart_command),
        unit = u8::from(t.service.install_unit),
    )
}

/// `uninstall.sh`: stop and remove the service and every installed release.
pub fn uninstall_sh(t: &Target) -> String {
    format!(
        r#"#!/bin/sh
# Remove speck ({name}): stop and disable the service, delete PREFIX/current and all releases.
# Usage: sudo ./uninstall.sh
set -eu
PREFIX={prefix}
INSTALL_UNIT={unit}
if [ "$INSTALL_UNIT" = 1 ]; then
    systemctl disable --now speck.service 2>/dev/null || true
    rm -f /etc/systemd/system/speck.service
    systemctl daemon-reload
fi
rm -f "$PREFIX/current" "$PREFIX/current.new"
rm -rf "$PREFIX/releases"
rmdir "$PREFIX" 2>/dev/null || true
echo "speck removed from $PREFIX"
"#,
        name = t.name,
        prefix = sh_quote(&t.service.prefix),
        unit = u8::from(t.service.install_unit),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn unit_runs_the_current_release_with_board_defaults() {
        let t = Target::load("rpi5").unwrap();
        let u = systemd_unit(&t);
        assert!(u.contains("ExecStart=/opt/speck/current/bin/speck run --model /opt/speck/current/share/speck/speck-tiny-int8.onnx --source rpicam --serve 0.0.0.0:8080 --threads 4"), "{u}");
        assert!(u.contains("--tile 384x384 --overlap 0.2"));
        assert!(u.contains("WantedBy=multi-user.target"));
        // fp16 arithmetic only where the board file asks for it
        let mut t = Target::load("rpi4").unwrap();
        assert!(!systemd_unit(&t).contains("--fp16"));
        t.defaults.fp16 = true;
        assert!(systemd_unit(&t).contains(" --fp16"));
    }

    #[test]
    fn install_script_is_valid_sh() {
        let t = Target::load("rpi4").unwrap();
        for text in [install_sh(&t), uninstall_sh(&t)] {
            let st = std::process::Command::new("sh")
                .args(["-n", "-c", &text])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
}
