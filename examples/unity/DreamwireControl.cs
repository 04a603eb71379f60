// DreamwireControl.cs: drive a running `dreamwire run` from the Unity inspector.
//
// Add it to any GameObject. Every live parameter is an inspector field (names, ranges and defaults as in
// docs/osc.md), the list ones (prompt and seed blends, t_index_list, the per-ControlNet lists) as arrays;
// each frame the fields are compared with what was last sent (arrays element by element) and only the
// changed ones go out, all of one frame's changes as one OSC bundle so they land on the same engine step.
// An empty array sends a message with no arguments: the list is cleared (dreamwire's default). Scripts,
// Timeline and Animator can set the same public fields. Telemetry (fps, latency, engine time, health,
// the last error) is read on a background thread from the telemetry port and shown in the inspector
// and, optionally, in an on-screen overlay.
//
// Needs DreamwireOsc.cs next to it; no other package.

using System;
using System.Net.Sockets;
using UnityEngine;
using Dreamwire;

[AddComponentMenu("Dreamwire/Dreamwire Control")]
public class DreamwireControl : MonoBehaviour
{
    public enum Quantize { Off, Beat, Bar }

    /// <summary>One entry of prompt_blend: a prompt and its weight (0, or 1e-06 .. 1e+06).</summary>
    [Serializable]
    public struct PromptWeight
    {
        public string prompt;
        [Min(0f)] public float weight;
        public PromptWeight(string prompt, float weight) { this.prompt = prompt; this.weight = weight; }
    }

    /// <summary>One entry of seed_blend: a seed and its weight.</summary>
    [Serializable]
    public struct SeedWeight
    {
        [Min(0)] public int seed;
        [Min(0f)] public float weight;
        public SeedWeight(int seed, float weight) { this.seed = seed; this.weight = weight; }
    }

    [Header("Connection (dreamwire run --osc-port / --telemetry / --osc-prefix)")]
    public string host = "127.0.0.1";
    public int oscPort = 7766;
    [Tooltip("Where dreamwire sends telemetry and errors: its --telemetry port. 0 = don't listen.")]
    public int telemetryPort = 7767;
    public string prefix = "/dreamwire";
    [Tooltip("Send every field once when enabled, so the runtime matches the inspector.")]
    public bool sendAllOnEnable = true;

    [Header("Prompt")]
    [TextArea(2, 5)] public string prompt = "an oil painting of a city at night, vivid colors";
    [TextArea(1, 3)] public string negativePrompt = "low quality, blurry, watermark";

    [Header("Diffusion")]
    [Range(0f, 1f)] public float strength = 0.4f;
    [Range(1, 8)] public int steps = 2;
    [Tooltip("1 = no guidance; no effect with --guidance none.")]
    [Range(0f, 20f)] public float guidanceScale = 1.2f;
    [Range(0f, 1f)] public float delta = 1.0f;
    [Min(0)] public int seed = 2;

    [Header("Similarity filter (img2img)")]
    public bool similarityFilter = false;
    [Range(0f, 1f)] public float similarityThreshold = 0.98f;
    [Tooltip("Most consecutive skips before a frame is forced through.")]
    [Range(0, 1000)] public int similarityMaxSkip = 10;

    [Header("Temporal consistency")]
    [Tooltip("Pull of each new frame toward the last output: steadies flicker (0.15 is a start; high smears motion).")]
    [Range(0f, 1f)] public float latentFeedback = 0f;

    [Header("Show")]
    public bool pause = false;
    public bool bypass = false;
    [Tooltip("Hold changes until the next beat or bar of dreamwire's tempo.")]
    public Quantize quantize = Quantize.Off;

    [Header("Blends (up to 16 entries; empty = use prompt / seed)")]
    [Tooltip("Prompts mixed by their normalised weights; overrides prompt while not empty.")]
    public PromptWeight[] promptBlend = new PromptWeight[0];
    [Tooltip("Seeds' noise mixed by their weights; overrides seed while not empty.")]
    public SeedWeight[] seedBlend = new SeedWeight[0];
    [Tooltip("Explicit ascending LCM step indices (0 .. 49, up to 8); overrides strength/steps while not empty.")]
    [Range(0, 49)] public int[] tIndexList = new int[0];

    [Header("ControlNet (one value per --controlnet, in order, up to 4; empty = the defaults)")]
    [Range(0f, 5f)] public float[] controlnetScale = new float[0];
    public bool[] controlnetEnabled = new bool[0];
    [Tooltip("Fraction of the steps before which each ControlNet is inactive.")]
    [Range(0f, 1f)] public float[] controlnetStart = new float[0];
    [Tooltip("Fraction of the steps after which each ControlNet is inactive (at 1 step: below 1 is off).")]
    [Range(0f, 1f)] public float[] controlnetEnd = new float[0];

    [Header("Scenes (context menu: Save Scene / Recall Scene)")]
    [Range(0, 999)] public int scene = 0;
    [Tooltip("Seconds a recall morphs over; 0 = at once.")]
    [Range(0f, 60f)] public float morphTime = 0f;

    [Header("Telemetry (read only)")]
    public float fps;
    public float latencyMs;
    public float engineMs;
    public string health = "";
    public string lastError = "";
    public bool showOverlay = true;

    DreamwireSender sender;
    OscReceiver telemetry;
    Func<object>[] fields;
    string[] addresses;
    object[] sent;
    readonly object gate = new object();
    float inFps, inLatency, inEngine;
    string inHealth = "", inError = "", failure = "";
    bool newError;

    void OnEnable()
    {
        addresses = new[] {
            DreamwireAddress.Prompt, DreamwireAddress.NegativePrompt, DreamwireAddress.Strength,
            DreamwireAddress.Steps, DreamwireAddress.GuidanceScale, DreamwireAddress.Delta, DreamwireAddress.Seed,
            DreamwireAddress.SimilarityFilter, DreamwireAddress.SimilarityThreshold,
            DreamwireAddress.SimilarityMaxSkip, DreamwireAddress.LatentFeedback, DreamwireAddress.Pause,
            DreamwireAddress.Bypass, DreamwireAddress.Quantize,
            DreamwireAddress.PromptBlend, DreamwireAddress.SeedBlend, DreamwireAddress.TIndexList,
            DreamwireAddress.ControlnetScale, DreamwireAddress.ControlnetEnabled, DreamwireAddress.ControlnetStart,
            DreamwireAddress.ControlnetEnd,
        };
        fields = new Func<object>[] {
            () => prompt, () => negativePrompt, () => strength, () => steps, () => guidanceScale, () => delta,
            () => seed, () => similarityFilter, () => similarityThreshold, () => similarityMaxSkip, () => latentFeedback,
            () => pause, () => bypass,
            () => quantize.ToString().ToLowerInvariant(),
            () => Flat(promptBlend), () => Flat(seedBlend), () => Flat(tIndexList), () => Flat(controlnetScale),
            () => Flat(controlnetEnabled), () => Flat(controlnetStart), () => Flat(controlnetEnd),
        };
        sent = new object[fields.Length];
        if (!sendAllOnEnable)
            for (int i = 0; i < fields.Length; i++) sent[i] = fields[i]();
        try
        {
            sender = new DreamwireSender(host, oscPort, prefix);
            if (telemetryPort > 0) telemetry = Listen(new OscReceiver(telemetryPort, "0.0.0.0", prefix));
        }
        catch (SocketException e)  // a port in use or an unknown host: say so once, stay disabled
        {
            Debug.LogWarning("Dreamwire: cannot open OSC sockets (" + host + ":" + oscPort + ", telemetry " +
                             telemetryPort + "): " + e.Message);
            enabled = false;
        }
    }

    OscReceiver Listen(OscReceiver r)
    {
        r.On(DreamwireAddress.Fps, m => { lock (gate) inFps = m.Float(0); });
        r.On(DreamwireAddress.LatencyMs, m => { lock (gate) inLatency = m.Float(0); });
        r.On(DreamwireAddress.EngineMs, m => { lock (gate) inEngine = m.Float(0); });
        r.On(DreamwireAddress.Health, m => { lock (gate) inHealth = m.Text(0) + (m.Text(1).Length > 0 ? ": " + m.Text(1) : ""); });
        r.On(DreamwireAddress.Error, m => { lock (gate) { inError = m.Text(0) + ": " + m.Text(1); newError = true; } });
        r.Failed += e => { lock (gate) failure = e.Message; };
        return r.Start();
    }

    void OnDisable()
    {
        if (telemetry != null) telemetry.Dispose();
        if (sender != null) sender.Dispose();
        telemetry = null;
        sender = null;
    }

    void Update()
    {
        if (sender == null) return;
        var changed = new System.Collections.Generic.List<byte[]>();
        for (int i = 0; i < fields.Length; i++)
        {
            object now = fields[i]();
            if (Same(now, sent[i])) continue;
            var list = now as object[];
            changed.Add(list != null ? sender.Message(addresses[i], list) : sender.Message(addresses[i], now));
            sent[i] = now;
        }
        if (changed.Count == 1) Send(changed[0]);
        else if (changed.Count > 1) Send(Osc.Bundle(changed.ToArray()));
        lock (gate)
        {
            fps = inFps;
            latencyMs = inLatency;
            engineMs = inEngine;
            health = inHealth;
            lastError = inError;
            if (newError) Debug.LogWarning("dreamwire rejected " + inError);
            if (failure.Length > 0) Debug.LogWarning("Dreamwire telemetry: " + failure);
            newError = false;
            failure = "";
        }
    }

    // A list field as the flat OSC arguments docs/osc.md gives (prompt, weight, prompt, weight ...). A copy:
    // the inspector edits arrays in place, so the last sent value must not be the same array.
    static object[] Flat(PromptWeight[] blend)
    {
        var args = new object[blend == null ? 0 : 2 * blend.Length];
        for (int i = 0; i < args.Length / 2; i++) { args[2 * i] = blend[i].prompt ?? ""; args[2 * i + 1] = blend[i].weight; }
        return args;
    }

    static object[] Flat(SeedWeight[] blend)
    {
        var args = new object[blend == null ? 0 : 2 * blend.Length];
        for (int i = 0; i < args.Length / 2; i++) { args[2 * i] = blend[i].seed; args[2 * i + 1] = blend[i].weight; }
        return args;
    }

    static object[] Flat<T>(T[] values)
    {
        var args = new object[values == null ? 0 : values.Length];
        for (int i = 0; i < args.Length; i++) args[i] = values[i];
        return args;
    }

    static bool Same(object a, object b)
    {
        var x = a as object[];
        var y = b as object[];
        if (x == null || y == null) return Equals(a, b);
        if (x.Length != y.Length) return false;
        for (int i = 0; i < x.Length; i++)
            if (!Equals(x[i], y[i])) return false;
        return true;
    }

    void Send(byte[] packet)
    {
        try { sender.SendPacket(packet); }
        catch (SocketException e) { Debug.LogWarning("Dreamwire: send to " + host + ":" + oscPort + " failed: " + e.Message); }
    }

    // --- actions: call from UI buttons, Timeline signals or the component's context menu ---------------

    /// <summary>Send every field again on the next frame, e.g. after dreamwire was restarted.</summary>
    [ContextMenu("Send All")]
    public void SendAll()
    {
        if (sent != null) Array.Clear(sent, 0, sent.Length);
    }

    /// <summary>Snapshot every live parameter as scene <see cref="scene"/> (dreamwire run --scenes FILE).</summary>
    [ContextMenu("Save Scene")]
    public void SaveScene() { if (sender != null) Send(sender.Message(DreamwireAddress.SceneSave, scene)); }

    /// <summary>Restore scene <see cref="scene"/>, morphing over <see cref="morphTime"/> seconds. The
    /// inspector keeps its own values: change a field afterwards and that field is sent again.</summary>
    [ContextMenu("Recall Scene")]
    public void RecallScene()
    {
        if (sender != null) Send(sender.Message(DreamwireAddress.SceneRecall, scene, morphTime));
    }

    /// <summary>Glide a number parameter (strength, guidance_scale, delta, steps, seed, ...) to a target;
    /// curve: linear, ease, ease_in or ease_out. A later direct change of that field cancels the morph.</summary>
    public void Morph(string parameter, float target, float seconds, string curve = "linear")
    {
        if (sender != null) Send(sender.Message(DreamwireAddress.Morph, parameter, target, seconds, curve));
    }

    /// <summary>Crossfade to a new prompt (an embedding blend over <paramref name="seconds"/>).</summary>
    public void MorphPrompt(string text, float seconds)
    {
        if (sender == null) return;
        Send(sender.Message(DreamwireAddress.Morph, "prompt", text, seconds, "ease"));
        prompt = text;
        sent[0] = text;  // already on its way: don't cut the crossfade short with a direct change
    }

    public void SetTempo(float bpm) { if (sender != null) Send(sender.Message(DreamwireAddress.Tempo, bpm)); }

    [ContextMenu("Tap Beat")]
    public void TapBeat() { if (sender != null) Send(sender.Message(DreamwireAddress.Beat)); }

    void OnGUI()
    {
        if (!showOverlay) return;
        GUI.Label(new Rect(10, 10, 600, 22), string.Format("dreamwire  {0:0.0} fps  latency {1:0} ms  engine {2:0.0} ms  {3}",
                                                          fps, latencyMs, engineMs, health));
        if (lastError.Length > 0) GUI.Label(new Rect(10, 32, 900, 22), "last error: " + lastError);
    }
}
