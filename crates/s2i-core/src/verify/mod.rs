//! `s2i verify`: do two images, built from the same source with two builders, do the same thing
//! for a user? Each is run the same way ([`observe`]: its own command, commands in it, HTTP
//! requests to it), as many times as asked; what they did is masked ([`mask`]) and compared,
//! side against side and run against run ([`report`]), and what differs between the images
//! explains it ([`image`], [`diff`]).
//!
//! The binary builds the two images (with `s2i_core::build`), calls [`observe_both`] and
//! [`image::examine`], and renders the [`Report`]. Everything the images print or answer is
//! untrusted and bounded; nothing of it is run on the host.

pub mod diff;
pub mod image;
pub mod mask;
pub mod observe;
pub mod report;

use s2i_engine::Engine;

pub use diff::{FieldDiff, FileChange, FileCounts, FilesDiff, ImageDiff};
pub use image::{examine, ImageFacts};
pub use mask::{MaskInfo, Masks};
pub use observe::{Checks, HttpProbe, Observation};
pub use report::{compare, AspectReport, AspectVerdict, Outcomes, Report, SideInfo, Twice, Verdict};

use crate::error::Result;

/// One image to run: the name to run it by and the name its containers are named after.
#[derive(Debug, Clone)]
pub struct Subject {
    pub image: String,
    pub name_base: String,
}

/// Run the checks on both images, `checks.runs` times each: A, B, A, B… one container at a
/// time (an engine whose containers share the host's network could not serve two apps on one
/// port, and a run never competes with the other side's for the machine).
pub async fn observe_both(engine: &dyn Engine, subjects: [&Subject; 2], checks: &Checks) -> Result<[Vec<Observation>; 2]> {
    let mut seen: [Vec<Observation>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=checks.runs {
        for (i, subject) in subjects.iter().enumerate() {
            tracing::info!("Run {run} of {} on side {}: {}", checks.runs, if i == 0 { 'A' } else { 'B' }, subject.image);
            seen[i].push(observe::observe(engine, &subject.image, &subject.name_base, checks).await?);
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use s2i_testkit::fake::{Call, FakeEngine, FakeImage, Fault};
    use std::time::Duration;

    fn checks(execs: &[&str], runs: u32) -> Checks {
        Checks {
            run: true,
            timeout: Duration::from_secs(2),
            runs,
            execs: execs.iter().map(|s| s.to_string()).collect(),
            http: Vec::new(),
            headers: vec!["content-type".into()],
            masks: Masks::new(true, &[]).unwrap(),
            limits: Limits::default(),
        }
    }

    fn app(greeting: &'static str) -> FakeImage {
        let mut image = FakeImage::new()
            .program("/usr/libexec/s2i/run", move |exec| {
                exec.say(&format!("{greeting} at 2024-01-02T03:04:05Z"));
                exec.complain("served in 0.25s");
                0
            })
            .program("/usr/bin/check", |exec| {
                exec.say(&format!("checked {}", exec.args.join(" ")));
                7
            });
        image.info.cmd = Some(vec!["/usr/libexec/s2i/run".into()]);
        image
    }

    fn subject(name: &str) -> Subject {
        Subject { image: name.into(), name_base: name.into() }
    }

    #[tokio::test]
    async fn both_sides_run_alternately_masked_and_every_container_is_removed() {
        let engine = FakeEngine::new();
        engine.add_image("a:latest", app("hello"));
        engine.add_image("b:latest", app("bonjour"));
        let seen = observe_both(&engine, [&subject("a:latest"), &subject("b:latest")], &checks(&[], 2)).await.unwrap();
        assert_eq!(seen[0].len(), 2);
        let stdout = |o: &Observation| o.values.iter().find(|(a, _)| a.field == "stdout").unwrap().1.clone();
        assert_eq!(stdout(&seen[0][0]), "hello at <timestamp>\n");
        assert_eq!(stdout(&seen[1][1]), "bonjour at <timestamp>\n");
        assert_eq!(seen[0][0].values[2].1, "served in <duration>\n");
        let report = Outcomes::new(2, Vec::new(), compare(&seen[0], &seen[1]));
        let stdout_aspect = report.aspects.iter().find(|a| a.field == "stdout").unwrap();
        assert_eq!(stdout_aspect.verdict, AspectVerdict::Differ);
        assert_eq!(report.differences, 1);
        assert!(engine.containers().is_empty(), "{:?}", engine.containers());
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_does_not_end_is_stopped_at_the_timeout_and_removed() {
        let engine = FakeEngine::new();
        engine.add_image("a:latest", app("hello"));
        // The first run hangs: it is stopped at the timeout; it is an outcome, not an error.
        engine.inject(Call::RunContainer, 0, Fault::Hang);
        let obs = observe::observe(&engine, "a:latest", "a", &checks(&[], 1)).await.unwrap();
        assert_eq!(obs.values[0].1, "timed out after 2 s");
        assert!(engine.containers().is_empty());
    }

    #[tokio::test]
    async fn exec_commands_run_with_sh_in_a_fresh_container_and_a_failed_start_is_an_outcome() {
        let engine = FakeEngine::new();
        engine.add_image("a:latest", app("hello"));
        engine.add_image("nosh:latest", app("hello").without("/bin/sh"));
        let c = checks(&["/usr/bin/check 'import app'"], 1);
        let obs = observe::observe(&engine, "a:latest", "a", &c).await.unwrap();
        let exec: Vec<(&str, &str)> = obs.values.iter().filter(|(a, _)| a.check.starts_with("exec: ")).map(|(a, v)| (a.field.as_str(), v.as_str())).collect();
        assert_eq!(exec, [("exit", "exit 7"), ("stdout", "checked import app\n"), ("stderr", "")]);
        let obs = observe::observe(&engine, "nosh:latest", "a", &c).await.unwrap();
        let exit = obs.values.iter().find(|(a, _)| a.check.starts_with("exec: ") && a.field == "exit").unwrap();
        assert!(exit.1.starts_with("did not start: "), "{}", exit.1);
        assert!(engine.containers().is_empty());
    }
}
