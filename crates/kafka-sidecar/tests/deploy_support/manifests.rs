//! Readers for the Kubernetes example (`deploy/kubernetes`) and the Dockerfile.

use std::path::Path;

use kafka_sidecar::Config;
use kafka_sidecar::config::ConfigSources;
use serde::Deserialize;
use serde_norway::Value as Yaml;

use super::read;

pub fn documents(path: &str) -> Vec<Yaml> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Yaml::deserialize(document).unwrap_or_else(|error| panic!("{path}: {error}")))
        .filter(|document| !document.is_null())
        .collect()
}

/// The first document of `kind` in the manifest at `path`.
pub fn manifest(path: &str, kind: &str) -> Yaml {
    of_kind(&documents(path), kind).clone()
}

pub fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents.iter().find(|document| document["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

/// `80Mi`, `1Gi`, `500M`, ... in bytes.
pub fn quantity_bytes(quantity: &str) -> u64 {
    let units =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)];
    let (number, factor) = units
        .iter()
        .find_map(|(unit, factor)| quantity.strip_suffix(unit).map(|number| (number, *factor)))
        .unwrap_or((quantity, 1));
    number.parse::<u64>().expect("a whole quantity") * factor
}

pub fn env_value<'a>(container: &'a Yaml, name: &str) -> Option<&'a str> {
    let variables = container["env"].as_sequence()?;
    variables.iter().find(|variable| variable["name"] == name).and_then(|variable| variable["value"].as_str())
}

/// The example's sidecar container, its configuration as the sidecar loads it, and the pod spec.
pub fn kubernetes_sidecar() -> (Yaml, Config, Yaml) {
    let documents = documents("deploy/kubernetes/deployment.yaml");
    let pod = of_kind(&documents, "Deployment")["spec"]["template"]["spec"].clone();
    let sidecar = pod["initContainers"]
        .as_sequence()
        .expect("the sidecar is a native sidecar (an init container)")
        .iter()
        .find(|container| container["name"] == "kafka-sidecar")
        .expect("a kafka-sidecar container")
        .clone();
    assert_eq!(sidecar["restartPolicy"], "Always", "an init container without restartPolicy Always blocks the app");
    let args: Vec<&str> = sidecar["args"].as_sequence().expect("args").iter().filter_map(Yaml::as_str).collect();
    let path = Path::new(args.iter().skip_while(|arg| **arg != "--config").nth(1).expect("--config FILE"));
    let mount = sidecar["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|mount| mount["mountPath"].as_str().map(Path::new) == path.parent())
        .expect("the config file's folder is mounted");
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    let config_map = of_kind(&documents, "ConfigMap");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"], "the mount is the ConfigMap");
    let file_name = path.file_name().and_then(|name| name.to_str()).expect("file name");
    let yaml = config_map["data"][file_name].as_str().expect("the ConfigMap holds the config file");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("write config");
    let env: Vec<(String, String)> = sidecar["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?.to_string(), v["value"].as_str()?.to_string())))
        .collect();
    let sources = ConfigSources { file: Some(file.path().to_path_buf()), env, overrides: Vec::new() };
    let config = Config::load(&sources).unwrap_or_else(|error| panic!("the ConfigMap's configuration: {error}"));
    (sidecar, config, pod)
}

/// The port a probe names (by name or number), resolved against the container's ports.
pub fn probe_port(container: &Yaml, probe: &Yaml) -> u64 {
    let port = &probe["httpGet"]["port"];
    port.as_u64().unwrap_or_else(|| {
        let ports = container["ports"].as_sequence().expect("ports");
        let named = ports.iter().find(|p| &p["name"] == port).expect("the probe's named port");
        named["containerPort"].as_u64().expect("containerPort")
    })
}

/// (probe, path) of the sidecar's probes, checked to target the admin listener.
pub fn sidecar_probes() -> Vec<(&'static str, String)> {
    let (sidecar, config, _) = kubernetes_sidecar();
    let mut probes = Vec::new();
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let probe = &sidecar[kind];
        assert_eq!(probe_port(&sidecar, probe), u64::from(config.admin.listen.port()), "{kind} is not on admin");
        probes.push((kind, probe["httpGet"]["path"].as_str().expect("path").to_string()));
    }
    probes
}
