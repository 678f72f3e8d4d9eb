//! Config-only instructions: ENV, LABEL, USER, EXPOSE, VOLUME, ENTRYPOINT, CMD, SHELL,
//! HEALTHCHECK, STOPSIGNAL, ONBUILD and MAINTAINER edit the image config and add a history
//! entry, without running anything.

use crate::image::{ConfigBuilder, Healthcheck};
use crate::ir::Op;

/// Apply a config-only op to the image config, recording history like BuildKit.
pub(super) fn apply_config(config: &mut ConfigBuilder, op: &Op, text: &str) {
    match op {
        Op::Env(kvs) => {
            for kv in kvs {
                config.env(&kv.key, &kv.value);
            }
        }
        Op::Label(kvs) => {
            for kv in kvs {
                config.label(&kv.key, &kv.value);
            }
        }
        Op::User(u) => {
            config.user(u);
        }
        Op::Expose(ports) => {
            for p in ports {
                config.expose(p);
            }
        }
        Op::Volume(vs) => {
            for v in vs {
                config.volume(v);
            }
        }
        Op::Entrypoint(argv) => {
            // The IR says exactly what changes: ENTRYPOINT alone leaves CMD as it is (a
            // Dockerfile frontend emits its own `cmd(none)` where Docker resets it).
            let cmd = config.image().config.cmd.clone();
            config.entrypoint(argv.clone());
            config.cmd(cmd);
        }
        Op::Cmd(argv) => {
            config.cmd(argv.clone());
        }
        Op::Shell(argv) => {
            config.shell(argv.clone());
        }
        Op::Healthcheck(h) => {
            config.healthcheck(Some(Healthcheck {
                test: h.test.clone(),
                interval: h.interval.unwrap_or(0) as i64,
                timeout: h.timeout.unwrap_or(0) as i64,
                start_period: h.start_period.unwrap_or(0) as i64,
                start_interval: h.start_interval.unwrap_or(0) as i64,
                retries: h.retries.unwrap_or(0) as i64,
            }));
        }
        Op::Stopsignal(s) => {
            config.stop_signal(s);
        }
        Op::Onbuild(t) => {
            config.onbuild(t);
        }
        Op::Maintainer(m) => {
            config.author(m);
        }
        Op::Arg(_) | Op::Run(_) | Op::Copy(_) | Op::Workdir(_) => {}
    }
    if !matches!(op, Op::Run(_) | Op::Copy(_) | Op::Workdir(_)) {
        config.config_only(text);
    }
}
