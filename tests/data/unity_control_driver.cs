// Drives examples/unity/DreamwireControl.cs outside Unity (against tests/data/unity_engine_stub.cs) the
// way the engine would: OnEnable, then one Update per "frame", with inspector edits in between. The
// test listens on OSC_PORT and checks what went out each frame; it sends telemetry to TELEMETRY_PORT
// once this program prints "listening", and checks what the component shows.
// Usage: mono unity_control.exe OSC_PORT TELEMETRY_PORT

using System;
using System.Reflection;
using System.Threading;

static class ControlDriver
{
    static void Call(DreamwireControl c, string method)
    {
        typeof(DreamwireControl).GetMethod(method, BindingFlags.Instance | BindingFlags.NonPublic).Invoke(c, null);
    }

    static int Main(string[] argv)
    {
        var c = new DreamwireControl { oscPort = int.Parse(argv[0]), telemetryPort = int.Parse(argv[1]) };
        c.enabled = true;
        Call(c, "OnEnable");
        Console.WriteLine("listening");
        Call(c, "Update");                        // frame 1: every field, as one bundle
        Call(c, "Update");                        // frame 2: nothing changed, nothing sent
        c.strength = 0.7f;
        Call(c, "Update");                        // frame 3: one message
        c.seed = 99;
        c.guidanceScale = 2f;
        c.quantize = DreamwireControl.Quantize.Bar;
        Call(c, "Update");                        // frame 4: a bundle of three
        c.promptBlend = new[] { new DreamwireControl.PromptWeight("city", 0.7f),
                                new DreamwireControl.PromptWeight("forest", 0.3f) };
        c.controlnetScale = new[] { 0.5f };
        Call(c, "Update");                        // frame 5: two lists, one bundle
        c.promptBlend[1].weight = 0.5f;           // edited in place, as the inspector does
        Call(c, "Update");                        // frame 6: the blend again
        c.scene = 3;
        c.morphTime = 2f;
        c.SaveScene();
        c.RecallScene();
        c.MorphPrompt("a forest at dawn", 4f);
        Call(c, "Update");                        // frame 7: the prompt is already on its way: nothing
        c.Morph("strength", 0.2f, 1.5f, "ease_in");
        c.SendAll();
        Call(c, "Update");                        // frame 8: every field again, with today's values
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (c.lastError.Length == 0 || c.fps == 0f)  // until the test's telemetry has been shown
        {
            if (DateTime.UtcNow > deadline) { Console.WriteLine("timeout: no telemetry shown"); return 1; }
            Thread.Sleep(20);
            Call(c, "Update");
        }
        Console.WriteLine("shown " + c.fps + " | " + c.latencyMs + " | " + c.engineMs + " | " + c.health + " | " +
                          c.lastError);
        Call(c, "OnDisable");
        return 0;
    }
}
