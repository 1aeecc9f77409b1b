// The release of these binaries, printed by every component's --version and served at /version.

public enum BuildInfo {
    /// Our own release.
    public static let release = "0.16.0"
    /// The Kubernetes API version the apiserver serves, as kubectl reads it from /version.
    public static let kubernetesGitVersion = "v1.32.0-orchestrator"
    /// What `COMPONENT --version` prints: one line, ours and the API level.
    public static let versionLine = "\(release) (Kubernetes API \(kubernetesGitVersion))"
}
