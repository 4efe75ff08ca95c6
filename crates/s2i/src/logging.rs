//! `--loglevel` → tracing. Up to level 2 lines are plain (`WARNING: `/`ERROR: ` prefixes, as the
//! reference prints them); from 3 on they carry time, level and target for debugging.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub fn init(loglevel: u8) {
    let ours = match loglevel {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // Libraries below us (hyper, bollard) only speak at level 5.
    let filter = if loglevel >= 5 {
        EnvFilter::new("trace")
    } else {
        EnvFilter::new(format!("warn,s2i={ours},s2i_core={ours},s2i_engine={ours}"))
    };
    // Every line goes through the terminal writer, which keeps a live progress line below it.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::ui::LogWriter).with_ansi(false);
    if loglevel >= 3 {
        let _ = builder.try_init();
    } else {
        let _ = builder.event_format(Plain).try_init();
    }
}

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "ERROR: ")?,
            Level::WARN => write!(writer, "WARNING: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
