//! The WASI a frontend gets: every interface a guest toolchain imports is linked, and each one
//! is deterministic and empty, so a frontend stays a pure function of its input.
//!
//! A Rust guest for `wasm32-wasip2` imports the io and cli interfaces even when it does no I/O;
//! componentize-py's output (a CPython interpreter) imports all of WASI 0.2: clocks, random,
//! filesystem and sockets too. They are linked from wasmtime-wasi with a context that has:
//!
//! - no preopened directories (`wasi:filesystem/preopens` lists none, so no descriptor can be
//!   had and `wasi:filesystem/types` has nothing to act on), no environment, no arguments, no
//!   initial working directory, an empty stdin, stdout discarded and stderr in a memory pipe
//!   (a panic's message reaches the user);
//! - no network: TCP, UDP and name lookups are disabled and every socket address is refused;
//! - a fixed clock: `wall-clock.now` is always the Unix epoch and `monotonic-clock.now` always
//!   0; waiting on the clock (`subscribe-duration`, `subscribe-instant`) traps, since a frontend
//!   has nothing to wait for and a host-side sleep would not be bounded by the time limit;
//! - fixed random bytes: `wasi:random/random`, `insecure` and `insecure-seed` answer the same
//!   sequence every call.
//!
//! [`ALLOWED_IMPORTS`] lists exactly these interfaces; a component importing anything else is
//! refused at load time.

use std::time::Duration;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};

/// Imports a frontend may have, by interface name prefix (versions follow the `@`).
pub const ALLOWED_IMPORTS: &[&str] = &[
    // The frontend world itself.
    "wbuild:frontend/types@",
    "wbuild:frontend/host@",
    // Streams for stdio; errors and pollables of streams.
    "wasi:io/error@",
    "wasi:io/streams@",
    "wasi:io/poll@",
    // Empty environment and arguments; exit traps the call; stdin is empty, stdout discarded,
    // stderr captured; no terminal.
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-input@",
    "wasi:cli/terminal-output@",
    "wasi:cli/terminal-stdin@",
    "wasi:cli/terminal-stdout@",
    "wasi:cli/terminal-stderr@",
    // Rust's std seeds HashMap from insecure-seed; CPython seeds its hashes and `random` from
    // random/random. All answer fixed bytes.
    "wasi:random/insecure-seed@",
    "wasi:random/insecure@",
    "wasi:random/random@",
    // CPython reads the clocks (time.time, time.monotonic): fixed at 0; waiting traps.
    "wasi:clocks/wall-clock@",
    "wasi:clocks/monotonic-clock@",
    // CPython's os module: no preopened directory, so no file can be opened.
    "wasi:filesystem/preopens@",
    "wasi:filesystem/types@",
    // CPython's socket module: every use is refused.
    "wasi:sockets/network@",
    "wasi:sockets/instance-network@",
    "wasi:sockets/ip-name-lookup@",
    "wasi:sockets/tcp@",
    "wasi:sockets/tcp-create-socket@",
    "wasi:sockets/udp@",
    "wasi:sockets/udp-create-socket@",
];

/// The seed of every random source a frontend sees.
const RANDOM_BYTES: &[u8] = b"wbuild frontends are deterministic";

/// A wall clock stopped at the Unix epoch.
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never advances.
struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The WASI context of one frontend call; stderr goes to `stderr`.
pub fn context(stderr: MemoryOutputPipe) -> WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr)
        .wall_clock(FixedWallClock)
        .monotonic_clock(FixedMonotonicClock)
        .secure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random(Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random_seed(0x7762_7569_6c64)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

/// The name under which wasmtime-wasi links the monotonic clock (imports of other 0.2.x
/// versions resolve to it by semver).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Links WASI into `linker` as described above.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(
                "a frontend may not wait on the clock (subscribe-duration)"
            ))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::format_err!(
                "a frontend may not wait on the clock (subscribe-instant)"
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
