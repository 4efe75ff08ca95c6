//! A pod harness: the steps of a Tekton Task or a Shipwright build strategy, read from their YAML
//! file, run the way Tekton runs them in a pod, without a cluster.
//!
//! Each step is a container of its image, one after the other: the params, workspaces and results
//! substituted as Tekton substitutes them (`$(params.NAME)`, `$(params.NAME[*])` as a whole
//! argument, `$(workspaces.NAME.path|bound)`, `$(results.NAME.path)`), a `script` written to
//! `/tekton/scripts` and run with the step's args, `env`, `workingDir`, and the step's
//! `securityContext` mapped to the engine's flags:
//!
//! | securityContext | `docker run` |
//! |---|---|
//! | `runAsUser` / `runAsGroup` (the step's, else the pod's: [`TaskPod::run_as`]) | `--user UID[:GID]` |
//! | `runAsNonRoot: true` | the step fails, as the kubelet refuses it, when the user would be root or is not numeric |
//! | `allowPrivilegeEscalation: false` | `--security-opt no-new-privileges` |
//! | `capabilities.drop` / `.add` | `--cap-drop` / `--cap-add` |
//! | `seccompProfile: RuntimeDefault` | the engine's default profile (`Unconfined` is refused) |
//! | `readOnlyRootFilesystem: true` | `--read-only` |
//! | `privileged: true` | refused: the harness never runs a privileged container |
//!
//! Every workspace is mounted on every step (at `/workspace/NAME` or its `mountPath`, read-only
//! when declared so), the results directory at `/tekton/results`, a home at `/tekton/home`, and
//! each `emptyDir` volume of the Task where a step's `volumeMounts` put it: fresh host directories
//! of mode 0777, as an `emptyDir` is; one with `medium: Memory` is a tmpfs of mode 1777 (each
//! step that mounts it gets its own: what one step writes there the next does not see). The containers use the host's network, so that a registry
//! on the host's loopback ([`crate::TestRegistry`]) answers at `127.0.0.1`, as a registry does
//! from a pod. A step that fails ends the pod (the later steps do not run), and every container
//! is removed afterwards.
//!
//! Before it runs anything the harness checks the file the way the API server and Tekton's
//! validation would: the kind and API version, the keys of the spec, its params, workspaces,
//! results, volumes and steps (an unknown key is a typo), every variable a step uses declared,
//! every param given or defaulted, every non-optional workspace bound. A Shipwright strategy gets
//! the system params (`shp-source-root`, `shp-source-context`, `shp-output-image`,
//! `shp-output-insecure`, `shp-output-directory`) and results (`shp-image-digest`,
//! `shp-image-size`, `shp-error-reason`, `shp-error-message`) that the BuildRun controller adds,
//! with the source at `/workspace/source` (the workspace `source`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::engine::engine_command;

/// Which API a manifest is written against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodFlavor {
    /// A `tekton.dev/v1` `Task`.
    TektonTask,
    /// A `shipwright.io/v1beta1` `ClusterBuildStrategy` (or `BuildStrategy`).
    ShipwrightStrategy,
}

/// Where Shipwright puts the source, and the system params' fixed values.
const SHP_SOURCE_ROOT: &str = "/workspace/source";
const SHP_OUTPUT_DIRECTORY: &str = "/workspace/output-image";
const SHP_RESULTS: [&str; 4] = ["shp-image-digest", "shp-image-size", "shp-error-reason", "shp-error-message"];

/// The declared workspaces: name to (mount path, optional, read-only).
type Workspaces = BTreeMap<String, (String, bool, bool)>;

/// A param's value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ParamValue {
    String(String),
    Array(Vec<String>),
}

/// The steps of one Task or strategy, with what a TaskRun or BuildRun gives them.
pub struct TaskPod {
    flavor: PodFlavor,
    file: PathBuf,
    spec: Value,
    params: BTreeMap<String, ParamValue>,
    workspaces: BTreeMap<String, PathBuf>,
    volumes: BTreeMap<String, PathBuf>,
    mounts: Vec<(PathBuf, String, bool)>,
    output_directory: Option<PathBuf>,
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
}

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    /// The step's name.
    pub name: String,
    /// Its exit code (the engine's own, 125-127, when the container could not start; -1 when the
    /// harness refused it, as a kubelet refuses a container that breaks `runAsNonRoot`).
    pub exit_code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (or why it was refused).
    pub stderr: String,
    /// The `docker run` arguments it ran with.
    pub docker_args: Vec<String>,
}

/// What the pod did: the steps that ran, in order, and the results they wrote.
#[derive(Clone, Debug)]
pub struct PodOutcome {
    /// The steps that ran; the last one is the one that failed, if one did.
    pub steps: Vec<StepOutcome>,
    /// The results (file name to content), as the steps left them in `/tekton/results`.
    pub results: BTreeMap<String, String>,
    /// How many steps the Task has.
    pub step_count: usize,
}

impl PodOutcome {
    /// Whether every step ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.steps.len() == self.step_count && self.steps.iter().all(|s| s.exit_code == 0)
    }

    /// Every step's name, exit code, command and output, for a failure message.
    pub fn log(&self) -> String {
        let mut log = String::new();
        for s in &self.steps {
            log.push_str(&format!(
                "--- step {} exited {}\n    docker {}\n--- stdout\n{}--- stderr\n{}",
                s.name,
                s.exit_code,
                s.docker_args.join(" "),
                s.stdout,
                s.stderr
            ));
        }
        log
    }

    /// Panics with the pod's log unless every step succeeded.
    pub fn assert_succeeded(&self) -> &Self {
        assert!(self.succeeded(), "the pod failed:\n{}", self.log());
        self
    }

    /// A result's value with surrounding whitespace trimmed; panics with the log if it is missing.
    pub fn result(&self, name: &str) -> String {
        match self.results.get(name) {
            Some(v) => v.trim().to_string(),
            None => panic!("no result {name} (results: {:?}); the pod's log:\n{}", self.results.keys(), self.log()),
        }
    }

    /// The step named `name`; panics if it did not run.
    pub fn step(&self, name: &str) -> &StepOutcome {
        self.steps.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("step {name} did not run:\n{}", self.log()))
    }
}

impl TaskPod {
    /// The Tekton Task (`tekton.dev/v1`) named `name` in the YAML file `file`. Panics if the file holds no such
    /// document or it is not valid (see the module's doc).
    pub fn tekton_task(file: &Path, name: &str) -> TaskPod {
        Self::load(file, PodFlavor::TektonTask, name)
    }

    /// The Shipwright build strategy (`shipwright.io/v1beta1`) named `name` in the YAML file
    /// `file`.
    pub fn shipwright_strategy(file: &Path, name: &str) -> TaskPod {
        Self::load(file, PodFlavor::ShipwrightStrategy, name)
    }

    fn load(file: &Path, flavor: PodFlavor, name: &str) -> TaskPod {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let (api, kinds): (&str, &[&str]) = match flavor {
            PodFlavor::TektonTask => ("tekton.dev/v1", &["Task"]),
            PodFlavor::ShipwrightStrategy => ("shipwright.io/v1beta1", &["ClusterBuildStrategy", "BuildStrategy"]),
        };
        let mut found = None;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", file.display()));
            if doc["apiVersion"] == api && kinds.iter().any(|k| doc["kind"] == *k) && doc["metadata"]["name"] == name {
                assert!(found.is_none(), "{}: more than one {api} {kinds:?} named {name}", file.display());
                found = Some(doc);
            }
        }
        let doc = found.unwrap_or_else(|| panic!("{}: no {api} {kinds:?} named {name}", file.display()));
        check_keys(&doc, &["apiVersion", "kind", "metadata", "spec"], "the document");
        assert!(doc["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{}: metadata.name is missing", file.display());
        let mut spec = doc["spec"].clone();
        if flavor == PodFlavor::TektonTask {
            apply_step_template(&mut spec);
        }
        let mut pod = TaskPod {
            flavor,
            file: file.to_path_buf(),
            spec,
            params: BTreeMap::new(),
            workspaces: BTreeMap::new(),
            volumes: BTreeMap::new(),
            mounts: Vec::new(),
            output_directory: None,
            run_as_user: None,
            run_as_group: None,
        };
        pod.validate();
        if flavor == PodFlavor::ShipwrightStrategy {
            pod.params.insert("shp-source-root".into(), ParamValue::String(SHP_SOURCE_ROOT.into()));
            pod.params.insert("shp-source-context".into(), ParamValue::String(SHP_SOURCE_ROOT.into()));
            pod.params.insert("shp-output-insecure".into(), ParamValue::String("false".into()));
            pod.params.insert("shp-output-directory".into(), ParamValue::String(SHP_OUTPUT_DIRECTORY.into()));
        }
        pod
    }

    /// Sets a string param (a TaskRun's `params`, a Build's `paramValues`, or a Shipwright system
    /// param such as `shp-output-image`).
    pub fn param(mut self, name: &str, value: &str) -> TaskPod {
        self.params.insert(name.to_string(), ParamValue::String(value.to_string()));
        self
    }

    /// Sets an array param.
    pub fn array_param(mut self, name: &str, values: &[&str]) -> TaskPod {
        self.params.insert(name.to_string(), ParamValue::Array(values.iter().map(|v| v.to_string()).collect()));
        self
    }

    /// Binds a workspace to a host directory (a PersistentVolumeClaim, a Secret, a ConfigMap).
    /// For a Shipwright strategy, the workspace `source` is the source Shipwright fetched.
    pub fn workspace(mut self, name: &str, dir: &Path) -> TaskPod {
        self.workspaces.insert(name.to_string(), dir.to_path_buf());
        self
    }

    /// Backs the Task's volume `name` with a host directory instead of a fresh `emptyDir` (a
    /// Build's override of a strategy's overridable volume with a PersistentVolumeClaim).
    pub fn volume(mut self, name: &str, dir: &Path) -> TaskPod {
        self.volumes.insert(name.to_string(), dir.to_path_buf());
        self
    }

    /// Mounts a host path into every step, as the platform does (e.g. the registry credentials
    /// Tekton's credential initialisation puts under `/tekton/home/.docker`).
    pub fn mount(mut self, host: &Path, container: &str, read_only: bool) -> TaskPod {
        self.mounts.push((host.to_path_buf(), container.to_string(), read_only));
        self
    }

    /// Backs Shipwright's output directory (`$(params.shp-output-directory)`, where a strategy
    /// that leaves the push to Shipwright writes the image) with a host directory, to read the
    /// image from afterwards.
    pub fn output_directory(mut self, dir: &Path) -> TaskPod {
        self.output_directory = Some(dir.to_path_buf());
        self
    }

    /// The pod's `securityContext.runAsUser` and `runAsGroup`, for steps that set none of their
    /// own: what OpenShift's admission gives a pod (an arbitrary uid of the namespace's range).
    pub fn run_as(mut self, uid: u32, gid: Option<u32>) -> TaskPod {
        self.run_as_user = Some(uid);
        self.run_as_group = gid;
        self
    }

    fn steps(&self) -> &Vec<Value> {
        self.spec["steps"].as_array().expect("validated: steps")
    }

    /// The declared params: name to (type, default).
    fn declared_params(&self) -> BTreeMap<String, (String, Option<ParamValue>)> {
        let key = match self.flavor {
            PodFlavor::TektonTask => "params",
            PodFlavor::ShipwrightStrategy => "parameters",
        };
        let mut out = BTreeMap::new();
        for p in self.spec[key].as_array().into_iter().flatten() {
            let name = p["name"].as_str().expect("validated: name").to_string();
            let ty = p["type"].as_str().unwrap_or("string").to_string();
            let default = match self.flavor {
                PodFlavor::TektonTask => match &p["default"] {
                    Value::String(s) => Some(ParamValue::String(s.clone())),
                    Value::Array(a) => Some(ParamValue::Array(a.iter().map(scalar).collect())),
                    Value::Null => None,
                    other => panic!("param {name}: a default of {other}"),
                },
                PodFlavor::ShipwrightStrategy => match (&p["default"], &p["defaults"]) {
                    (Value::String(s), _) => Some(ParamValue::String(s.clone())),
                    (_, Value::Array(a)) => Some(ParamValue::Array(a.iter().map(scalar).collect())),
                    _ => None,
                },
            };
            out.insert(name, (ty, default));
        }
        if self.flavor == PodFlavor::ShipwrightStrategy {
            for name in ["shp-source-root", "shp-source-context", "shp-output-image", "shp-output-insecure", "shp-output-directory"] {
                out.insert(name.to_string(), ("string".to_string(), None));
            }
        }
        out
    }

    fn declared_results(&self) -> Vec<String> {
        match self.flavor {
            PodFlavor::TektonTask => {
                self.spec["results"].as_array().into_iter().flatten().map(|r| r["name"].as_str().expect("validated").to_string()).collect()
            }
            PodFlavor::ShipwrightStrategy => SHP_RESULTS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The declared workspaces: name to (mount path, optional, read-only).
    fn declared_workspaces(&self) -> Workspaces {
        match self.flavor {
            PodFlavor::TektonTask => self.spec["workspaces"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    let name = w["name"].as_str().expect("validated").to_string();
                    let path = w["mountPath"].as_str().map_or_else(|| format!("/workspace/{name}"), str::to_string);
                    (name, (path, w["optional"] == true, w["readOnly"] == true))
                })
                .collect(),
            PodFlavor::ShipwrightStrategy => [("source".to_string(), (SHP_SOURCE_ROOT.to_string(), false, false))].into_iter().collect(),
        }
    }

    /// The checks of the API server's schema and of Tekton's or Shipwright's validation that a
    /// typo in the file would fail.
    fn validate(&self) {
        let spec = &self.spec;
        let file = self.file.display();
        match self.flavor {
            PodFlavor::TektonTask => {
                check_keys(spec, &["description", "displayName", "params", "workspaces", "results", "volumes", "steps", "stepTemplate", "sidecars"], "spec");
                for p in spec["params"].as_array().into_iter().flatten() {
                    check_keys(p, &["name", "type", "description", "default", "properties", "enum"], "a param");
                    check_type(p);
                }
                for w in spec["workspaces"].as_array().into_iter().flatten() {
                    check_keys(w, &["name", "description", "mountPath", "readOnly", "optional"], "a workspace");
                    check_name(w);
                }
                for r in spec["results"].as_array().into_iter().flatten() {
                    check_keys(r, &["name", "type", "description", "properties", "value"], "a result");
                    let name = r["name"].as_str().unwrap_or_default();
                    // Tekton's pattern for result names.
                    let inner = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
                    assert!(
                        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric()) && name.chars().all(inner),
                        "{file}: result name {name:?}"
                    );
                }
            }
            PodFlavor::ShipwrightStrategy => {
                check_keys(spec, &["parameters", "steps", "volumes", "securityContext"], "spec");
                for p in spec["parameters"].as_array().into_iter().flatten() {
                    check_keys(p, &["name", "description", "type", "default", "defaults"], "a parameter");
                    check_type(p);
                    assert!(p["description"].is_string(), "{file}: parameter {} has no description (required)", p["name"]);
                    let name = p["name"].as_str().unwrap_or_default();
                    assert!(!name.starts_with("shp-"), "{file}: parameter {name}: the shp- prefix is Shipwright's own");
                }
            }
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let allowed: &[&str] = match self.flavor {
                PodFlavor::TektonTask => &["name", "emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected", "csi"],
                PodFlavor::ShipwrightStrategy => &["name", "description", "overridable", "emptyDir", "configMap", "secret", "persistentVolumeClaim"],
            };
            check_keys(v, allowed, "a volume");
            check_name(v);
        }
        let steps = spec["steps"].as_array().unwrap_or_else(|| panic!("{file}: spec.steps is missing"));
        assert!(!steps.is_empty(), "{file}: no steps");
        let step_keys: &[&str] = match self.flavor {
            PodFlavor::TektonTask => &[
                "name", "image", "command", "args", "workingDir", "env", "envFrom", "computeResources", "volumeMounts", "volumeDevices",
                "imagePullPolicy", "securityContext", "script", "timeout", "workspaces", "onError", "stdoutConfig", "stderrConfig",
                "params", "results", "ref", "when", "displayName",
            ],
            PodFlavor::ShipwrightStrategy => &[
                "name", "image", "command", "args", "workingDir", "env", "resources", "volumeMounts", "imagePullPolicy", "securityContext",
            ],
        };
        let volume_names: Vec<&str> = spec["volumes"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).collect();
        let mut names = Vec::new();
        for step in steps {
            check_keys(step, step_keys, "a step");
            let name = check_name(step);
            assert!(!names.contains(&name), "{file}: two steps named {name}");
            names.push(name);
            assert!(step["image"].is_string(), "{file}: step {name} has no image");
            assert!(!(step["script"].is_string() && step["command"].is_array()), "{file}: step {name} has both script and command");
            for m in step["volumeMounts"].as_array().into_iter().flatten() {
                check_keys(m, &["name", "mountPath", "readOnly", "subPath"], "a volumeMount");
                let v = m["name"].as_str().unwrap_or_default();
                assert!(volume_names.contains(&v), "{file}: step {name} mounts volume {v}, which is not declared");
            }
            for e in step["env"].as_array().into_iter().flatten() {
                check_keys(e, &["name", "value", "valueFrom"], "an env entry");
            }
            let sc = &step["securityContext"];
            if !sc.is_null() {
                check_keys(
                    sc,
                    &["runAsUser", "runAsGroup", "runAsNonRoot", "allowPrivilegeEscalation", "capabilities", "seccompProfile", "readOnlyRootFilesystem", "privileged", "procMount", "seLinuxOptions", "appArmorProfile"],
                    "a securityContext",
                );
            }
        }
    }

    /// Runs the steps in order, as a pod does. Panics if the run cannot be set up (an undeclared
    /// variable, a param missing, an image the engine does not have); a step that fails is in the
    /// outcome.
    pub fn run(&self) -> PodOutcome {
        let file = self.file.display();
        let declared = self.declared_params();
        for name in self.params.keys() {
            assert!(declared.contains_key(name), "{file}: param {name} is given but not declared");
        }
        let mut params = BTreeMap::new();
        for (name, (ty, default)) in &declared {
            let value = self.params.get(name).cloned().or_else(|| default.clone());
            let Some(value) = value else {
                // A Shipwright system param the strategy does not need may stay unset.
                if self.flavor == PodFlavor::ShipwrightStrategy && name.starts_with("shp-") {
                    continue;
                }
                panic!("{file}: param {name} has no value and no default");
            };
            let is_array = matches!(value, ParamValue::Array(_));
            assert_eq!(is_array, ty == "array", "{file}: param {name} is of type {ty}");
            params.insert(name.clone(), value);
        }
        let workspaces = self.declared_workspaces();
        for name in self.workspaces.keys() {
            assert!(workspaces.contains_key(name), "{file}: workspace {name} is bound but not declared");
        }
        for (name, (_, optional, _)) in &workspaces {
            assert!(*optional || self.workspaces.contains_key(name), "{file}: workspace {name} is not optional and not bound");
        }

        let dir = tempfile::Builder::new().prefix("s2i-test-pod-").tempdir().expect("a temp dir for the pod");
        let shared = |rel: &str| {
            let p = dir.path().join(rel);
            fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).expect("chmod 0777");
            p
        };
        let results_dir = shared("results");
        let home_dir = shared("home");
        let scripts_dir = shared("scripts");
        let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut memory: Vec<String> = Vec::new();
        for v in self.spec["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().expect("validated").to_string();
            match v["emptyDir"]["medium"].as_str() {
                None | Some("") => {}
                Some("Memory") if !self.volumes.contains_key(&name) => memory.push(name.clone()),
                Some("Memory") => {}
                Some(other) => panic!("{file}: volume {name}: emptyDir medium {other:?} is not Memory or empty"),
            }
            let host = match self.volumes.get(&name) {
                Some(host) => {
                    assert!(self.flavor == PodFlavor::TektonTask || v["overridable"] == true, "{file}: volume {name} is not overridable");
                    host.clone()
                }
                None => {
                    assert!(v["emptyDir"].is_object(), "{file}: volume {name} is not an emptyDir: give it a host directory with TaskPod::volume");
                    shared(&format!("volumes/{name}"))
                }
            };
            volumes.insert(name, host);
        }
        for name in self.volumes.keys() {
            assert!(volumes.contains_key(name), "{file}: volume {name} is given but not declared");
        }
        let output_dir = self.output_directory.clone().unwrap_or_else(|| shared("output-image"));

        let vars = Vars { file: &self.file, params: &params, workspaces: &workspaces, bound: &self.workspaces, results: self.declared_results() };
        let mut outcome = PodOutcome { steps: Vec::new(), results: BTreeMap::new(), step_count: self.steps().len() };
        let mut guard = Containers(Vec::new());
        for (index, step) in self.steps().iter().enumerate() {
            let name = step["name"].as_str().expect("validated").to_string();
            let image = vars.string(step["image"].as_str().expect("validated"));
            let container = format!("s2i-test-pod-{}-{}", crate::random_hex(8), crate::docker_component(&name));
            let mut args: Vec<String> = vec!["run".into(), "--name".into(), container.clone(), "--network".into(), "host".into()];

            // The user, as the kubelet decides it.
            let sc = &step["securityContext"];
            let uid = sc["runAsUser"].as_u64().map(|u| u as u32).or(self.run_as_user);
            let gid = sc["runAsGroup"].as_u64().map(|g| g as u32).or(self.run_as_group);
            let config = image_config(&image);
            let image_user = config["User"].as_str().unwrap_or("").to_string();
            let image_uid = image_user.split_once(':').map_or(image_user.as_str(), |(u, _)| u);
            if sc["runAsNonRoot"] == true {
                let effective = match uid {
                    Some(u) => Ok(u),
                    None if image_uid.is_empty() => Ok(0),
                    None => image_uid.parse::<u32>().map_err(|_| ()),
                };
                let refusal = match effective {
                    Ok(0) => Some("container has runAsNonRoot and image will run as root".to_string()),
                    Err(()) => Some(format!("container has runAsNonRoot and image has non-numeric user ({image_uid}), cannot verify user is non-root")),
                    Ok(_) => None,
                };
                if let Some(refusal) = refusal {
                    outcome.steps.push(StepOutcome { name, exit_code: -1, stdout: String::new(), stderr: refusal, docker_args: Vec::new() });
                    break;
                }
            }
            match (uid, gid) {
                (Some(u), Some(g)) => args.extend(["--user".into(), format!("{u}:{g}")]),
                (Some(u), None) => args.extend(["--user".into(), u.to_string()]),
                (None, Some(g)) => args.extend(["--user".into(), format!("{}:{g}", if image_uid.is_empty() { "0" } else { image_uid })]),
                (None, None) => {}
            }
            assert!(sc["privileged"] != true, "{file}: step {name} is privileged: the harness never runs a privileged container");
            if sc["allowPrivilegeEscalation"] == false {
                args.extend(["--security-opt".into(), "no-new-privileges".into()]);
            }
            for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
                args.extend(["--cap-drop".into(), scalar(cap)]);
            }
            for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
                args.extend(["--cap-add".into(), scalar(cap)]);
            }
            match sc["seccompProfile"]["type"].as_str() {
                None | Some("RuntimeDefault") => {}
                Some(other) => panic!("{file}: step {name}: seccompProfile {other} is not run by the harness"),
            }
            if sc["readOnlyRootFilesystem"] == true {
                args.push("--read-only".into());
            }

            // Mounts.
            let mut mount = |host: Option<&Path>, at: &str, ro: bool| match host {
                Some(host) => args.extend(["-v".into(), format!("{}:{at}{}", host.display(), if ro { ":ro" } else { "" })]),
                None => args.extend(["--tmpfs".into(), format!("{at}:rw,mode=1777")]),
            };
            mount(Some(&results_dir), "/tekton/results", false);
            mount(Some(&home_dir), "/tekton/home", false);
            mount(Some(&scripts_dir), "/tekton/scripts", true);
            for (ws, host) in &self.workspaces {
                let (path, _, ro) = &workspaces[ws];
                mount(Some(host), path, *ro);
            }
            if self.flavor == PodFlavor::ShipwrightStrategy && self.mentions(step, "shp-output-directory") {
                mount(Some(&output_dir), SHP_OUTPUT_DIRECTORY, false);
            }
            for m in step["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().expect("validated");
                let at = vars.string(m["mountPath"].as_str().unwrap_or_else(|| panic!("{file}: a volumeMount of {name} has no mountPath")));
                let host = (!memory.iter().any(|name| name == v)).then(|| volumes[v].as_path());
                mount(host, &at, m["readOnly"] == true);
            }
            for (host, at, ro) in &self.mounts {
                mount(Some(host), at, *ro);
            }

            for e in step["env"].as_array().into_iter().flatten() {
                let key = e["name"].as_str().unwrap_or_else(|| panic!("{file}: an env entry of {name} has no name"));
                assert!(e["valueFrom"].is_null(), "{file}: step {name}: env {key} valueFrom is not run by the harness");
                args.extend(["-e".into(), format!("{key}={}", vars.string(e["value"].as_str().unwrap_or("")))]);
            }
            if let Some(dir) = step["workingDir"].as_str() {
                args.extend(["-w".into(), vars.string(dir)]);
            }

            let step_args = vars.list(&step["args"]);
            if let Some(script) = step["script"].as_str() {
                let script = vars.string(script);
                let script = if script.starts_with("#!") { script } else { format!("#!/bin/sh\nset -e\n{script}") };
                let path = scripts_dir.join(format!("script-{index}"));
                fs::write(&path, script).expect("writing the script");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
                args.extend(["--entrypoint".into(), format!("/tekton/scripts/script-{index}"), image.clone()]);
            } else {
                let command = vars.list(&step["command"]);
                if let Some((first, rest)) = command.split_first() {
                    args.extend(["--entrypoint".into(), first.clone(), image.clone()]);
                    args.extend(rest.iter().cloned());
                } else {
                    args.push(image.clone());
                }
            }
            args.extend(step_args);

            guard.0.push(container.clone());
            let out = engine_command()
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run the docker CLI: {e}"));
            let exit_code = out.status.code().unwrap_or(-1);
            outcome.steps.push(StepOutcome {
                name,
                exit_code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                docker_args: args,
            });
            if exit_code != 0 {
                break;
            }
        }
        for entry in fs::read_dir(&results_dir).expect("reading the results dir") {
            let entry = entry.expect("a results entry");
            let value = fs::read_to_string(entry.path()).unwrap_or_else(|e| panic!("reading result {}: {e}", entry.path().display()));
            outcome.results.insert(entry.file_name().to_string_lossy().into_owned(), value);
        }
        drop(guard);
        outcome
    }

    /// Whether a step refers to `$(params.NAME)` anywhere (how Shipwright decides that a strategy
    /// uses its output directory).
    fn mentions(&self, step: &Value, name: &str) -> bool {
        step.to_string().contains(&format!("$(params.{name})"))
    }
}

/// Removes the pod's containers, whatever happened.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = engine_command().args(["rm", "-f", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// The image's config as the engine under test has it; panics when the engine does not have it
/// (the harness pulls nothing: a test pulls what a kubelet would).
fn image_config(image: &str) -> Value {
    let out = engine_command().args(["image", "inspect", image]).stdin(Stdio::null()).output().expect("running docker image inspect");
    assert!(out.status.success(), "the engine under test has no image {image}: pull it before running the pod");
    let v: Value = serde_json::from_slice(&out.stdout).expect("docker image inspect's JSON");
    v[0]["Config"].clone()
}

/// The variables of one run.
struct Vars<'a> {
    file: &'a Path,
    params: &'a BTreeMap<String, ParamValue>,
    workspaces: &'a Workspaces,
    bound: &'a BTreeMap<String, PathBuf>,
    results: Vec<String>,
}

impl Vars<'_> {
    /// `s` with every Tekton variable replaced; an array param here is an error (Tekton allows
    /// one only as a whole element of `command` or `args`).
    fn string(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("$(") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let var = &after[..end];
            match self.resolve(var) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A list (`command`, `args`), with `$(params.NAME[*])` elements expanded.
    fn list(&self, v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for item in v.as_array().into_iter().flatten() {
            let item = scalar(item);
            if let Some(name) = item.strip_prefix("$(params.").and_then(|r| r.strip_suffix("[*])")) {
                match self.params.get(name) {
                    Some(ParamValue::Array(values)) => out.extend(values.iter().cloned()),
                    _ => panic!("{}: {item} is not an array param", self.file.display()),
                }
            } else {
                out.push(self.string(&item));
            }
        }
        out
    }

    /// A variable's value, `None` for text that only looks like one (a shell's `$(command)`).
    fn resolve(&self, var: &str) -> Option<String> {
        let file = self.file.display();
        if let Some(name) = var.strip_prefix("params.") {
            return Some(match self.params.get(name) {
                Some(ParamValue::String(s)) => s.clone(),
                Some(ParamValue::Array(_)) => panic!("{file}: array param {name} used as a string ($({var}))"),
                None => panic!("{file}: $({var}): no such param, or it has no value"),
            });
        }
        if let Some(rest) = var.strip_prefix("workspaces.") {
            let (name, field) = rest.rsplit_once('.').unwrap_or_else(|| panic!("{file}: $({var})"));
            let (path, _, _) = self.workspaces.get(name).unwrap_or_else(|| panic!("{file}: $({var}): no such workspace"));
            let bound = self.bound.contains_key(name);
            return Some(match field {
                "path" if bound => path.clone(),
                "path" => String::new(),
                "bound" => bound.to_string(),
                other => panic!("{file}: $({var}): the harness knows no workspace field {other}"),
            });
        }
        if let Some(rest) = var.strip_prefix("results.") {
            let name = rest.strip_suffix(".path").unwrap_or_else(|| panic!("{file}: $({var})"));
            assert!(self.results.iter().any(|r| r == name), "{file}: $({var}): no such result");
            return Some(format!("/tekton/results/{name}"));
        }
        if var.starts_with("context.") || var.starts_with("steps.") || var.starts_with("step.") {
            panic!("{file}: $({var}): the harness does not substitute it");
        }
        None
    }
}

/// A YAML scalar as a string (YAML's `true` or `1` where a string was meant).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check_keys(v: &Value, allowed: &[&str], what: &str) {
    let map = v.as_object().unwrap_or_else(|| panic!("{what} is not a mapping: {v}"));
    for key in map.keys() {
        assert!(allowed.contains(&key.as_str()), "{what} has an unknown field {key:?} ({v})");
    }
}

fn check_name(v: &Value) -> &str {
    let name = v["name"].as_str().unwrap_or_else(|| panic!("no name: {v}"));
    assert!(
        !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{name:?} is not a DNS label (lower-case letters, digits and -)"
    );
    name
}

fn check_type(p: &Value) {
    let name = p["name"].as_str().unwrap_or_else(|| panic!("a param without a name: {p}"));
    match p["type"].as_str() {
        None | Some("string" | "array" | "object") => {}
        Some(other) => panic!("param {name}: no type {other}"),
    }
}

/// Tekton's `stepTemplate`: what a step does not set itself comes from the template; `env` and
/// `volumeMounts` are merged, the step's own entry winning for a name (a mount path) both have.
fn apply_step_template(spec: &mut Value) {
    let Some(template) = spec.get("stepTemplate").and_then(Value::as_object).cloned() else { return };
    let Some(steps) = spec.get_mut("steps").and_then(Value::as_array_mut) else { return };
    for step in steps.iter_mut().filter_map(Value::as_object_mut) {
        for (key, value) in &template {
            let merged_by = match key.as_str() {
                "env" => Some("name"),
                "volumeMounts" => Some("mountPath"),
                _ => None,
            };
            match (step.get_mut(key), merged_by) {
                (None, _) => {
                    step.insert(key.clone(), value.clone());
                }
                (Some(Value::Array(own)), Some(id)) => {
                    let inherited: Vec<Value> = value.as_array().into_iter().flatten().filter(|t| !own.iter().any(|o| o[id] == t[id])).cloned().collect();
                    own.splice(0..0, inherited);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars_check(params: &[(&str, ParamValue)]) -> (BTreeMap<String, ParamValue>, Workspaces) {
        let params = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let ws = [("source".to_string(), ("/workspace/source".to_string(), false, false)), ("cache".to_string(), ("/workspace/cache".to_string(), true, false))]
            .into_iter()
            .collect();
        (params, ws)
    }

    #[test]
    fn variables_are_substituted_as_tekton_does() {
        let (params, ws) = vars_check(&[("IMAGE", ParamValue::String("r/app".into())), ("ENV", ParamValue::Array(vec!["A=1".into(), "B=2".into()]))]);
        let bound: BTreeMap<String, PathBuf> = [("source".to_string(), PathBuf::from("/host/src"))].into_iter().collect();
        let vars = Vars { file: Path::new("t.yaml"), params: &params, workspaces: &ws, bound: &bound, results: vec!["IMAGE_DIGEST".into()] };
        assert_eq!(
            vars.string("$(params.IMAGE) $(workspaces.source.path) $(workspaces.cache.path)|$(workspaces.cache.bound) $(results.IMAGE_DIGEST.path) $(date) $(x"),
            "r/app /workspace/source |false /tekton/results/IMAGE_DIGEST $(date) $(x"
        );
        let list = serde_json::json!(["a", "$(params.ENV[*])", "$(params.IMAGE)", true]);
        assert_eq!(vars.list(&list), ["a", "A=1", "B=2", "r/app", "true"]);
        let typo = std::panic::catch_unwind(|| vars.string("$(params.IMAGES)"));
        assert!(typo.is_err(), "an undeclared param is an error");
        let array_as_string = std::panic::catch_unwind(|| vars.string("x $(params.ENV[*])"));
        assert!(array_as_string.is_err());
    }

    #[test]
    fn unknown_fields_are_typos() {
        check_keys(&serde_json::json!({"name": "a", "image": "b"}), &["name", "image"], "a step");
        let typo = std::panic::catch_unwind(|| check_keys(&serde_json::json!({"name": "a", "workingdir": "/x"}), &["name", "workingDir"], "a step"));
        assert!(typo.is_err());
        let bad = std::panic::catch_unwind(|| check_name(&serde_json::json!({"name": "Build_Step"})).to_string());
        assert!(bad.is_err());
    }

    #[test]
    fn the_projects_manifests_are_valid() {
        let tekton = TaskPod::tekton_task(&crate::repo_path("deploy/tekton/s2i.yaml"), "s2i");
        assert!(tekton.declared_results().contains(&"IMAGE_DIGEST".to_string()));
        assert!(tekton.declared_results().contains(&"IMAGE_URL".to_string()));
        for name in ["s2i", "s2i-shipwright-push"] {
            let shipwright = TaskPod::shipwright_strategy(&crate::repo_path("deploy/shipwright/s2i.yaml"), name);
            assert!(shipwright.declared_params().contains_key("builder-image"));
        }
    }
}
