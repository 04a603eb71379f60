// A console program around examples/unity/DreamwireOsc.cs, run by tests/test_unity_osc.py with Mono
// against a real `dreamwire run`. It sends what a Unity scene would (a prompt, a strength, a bundle of
// seed + guidance + a boolean, then one out-of-range strength), and prints every reply it decodes:
//   error <address> | <reason>        from the telemetry port
//   stats <name> <value>              from the telemetry port
//   state <name> <tags> <arg> <arg>   from the status reply to the sender's own socket
// The test compares those lines with what Python's own OSC client reads from the same run.
// Usage: mono unity_console.exe OSC_PORT TELEMETRY_PORT
//        mono unity_console.exe encode    (hex of fixed packets, one a line, for a byte-level check)
//        mono unity_console.exe decode    (hex packets on stdin -> one line per message, or "malformed")

using System;
using System.Globalization;
using System.Linq;
using System.Threading;
using Dreamwire;

static class UnityConsole
{
    const string Prompt = "a lighthouse painted from unity";

    static void Say(string line)
    {
        lock (typeof(UnityConsole)) Console.WriteLine(line);
    }

    static string Show(object a)
    {
        if (a is float) return ((float)a).ToString("R", CultureInfo.InvariantCulture);
        if (a is bool) return (bool)a ? "T" : "F";
        return Convert.ToString(a, CultureInfo.InvariantCulture);
    }

    static string Hex(byte[] b)
    {
        return BitConverter.ToString(b).Replace("-", "").ToLowerInvariant();
    }

    static int Encode()
    {
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Prompt, "neon jungle, déjà vu")));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Strength, 0.55f)));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Seed, -7)));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Pause, true)));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Bypass, false)));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Beat)));
        Console.WriteLine(Hex(Osc.Message(DreamwireAddress.Morph, "strength", 0.8f, 4.0, "ease", "beats")));
        Console.WriteLine(Hex(Osc.Bundle(Osc.Message(DreamwireAddress.Seed, 1234),
                                         Osc.Message(DreamwireAddress.GuidanceScale, 3.5f))));
        try { Osc.Message(DreamwireAddress.Seed, 12L); Console.WriteLine("long accepted"); }
        catch (ArgumentException e) { Console.WriteLine("rejected: " + e.Message); }
        return 0;
    }

    static int Decode()
    {
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            var packet = new byte[line.Length / 2];
            for (int i = 0; i < packet.Length; i++) packet[i] = Convert.ToByte(line.Substring(2 * i, 2), 16);
            try
            {
                var messages = Osc.Decode(packet, 0, packet.Length);
                Console.WriteLine(string.Join(" ; ", messages.Select(m => m.Address + " " + m.Tags + " " +
                                                                           string.Join(" ", m.Args.Select(Show)))));
            }
            catch (FormatException e) { Console.WriteLine("malformed: " + e.Message); }
        }
        return 0;
    }

    static int Main(string[] argv)
    {
        if (argv[0] == "encode") return Encode();
        if (argv[0] == "decode") return Decode();
        int oscPort = int.Parse(argv[0]), telemetryPort = int.Parse(argv[1]);
        var error = new ManualResetEvent(false);
        var stats = new ManualResetEvent(false);
        var state = new ManualResetEvent(false);
        using (var telemetry = new OscReceiver(telemetryPort))
        using (var dreamwire = new DreamwireSender("127.0.0.1", oscPort))
        using (var replies = new OscReceiver(dreamwire.Socket))  // disposed first: it borrows the socket
        {
            telemetry.On(DreamwireAddress.Error, m => { Say("error " + m.Text(0) + " | " + m.Text(1)); error.Set(); });
            telemetry.Any += m =>
            {
                if (!m.Address.StartsWith("/dreamwire/stats/")) return;
                Say("stats " + m.Address.Substring("/dreamwire/stats/".Length) + " " + Show(m.Float(0)));
                stats.Set();
            };
            bool promptApplied = false;  // only touched on the replies thread
            replies.Any += m =>
            {
                // /dreamwire/health closes every status reply, so once it comes every state line is out
                if (m.Address == DreamwireAddress.Health && promptApplied) state.Set();
                if (!m.Address.StartsWith(DreamwireAddress.StatePrefix)) return;
                Say("state " + m.Address.Substring(DreamwireAddress.StatePrefix.Length) + " " + m.Tags + " " +
                    string.Join(" ", m.Args.Select(Show)));
                if (m.Address == DreamwireAddress.StatePrefix + "prompt") promptApplied = m.Text(0) == Prompt;
            };
            foreach (var r in new[] { telemetry, replies })
            {
                r.Malformed += reason => Say("malformed: " + reason);
                r.Failed += e => Say("receiver failed: " + e.Message);
                r.Start();
            }

            dreamwire.Send(DreamwireAddress.Prompt, Prompt);
            dreamwire.Send(DreamwireAddress.Strength, 0.65f);
            dreamwire.SendBundle(dreamwire.Message(DreamwireAddress.Seed, 1234),
                                 dreamwire.Message(DreamwireAddress.GuidanceScale, 3.5f),
                                 dreamwire.Message(DreamwireAddress.SimilarityFilter, true));
            dreamwire.Send(DreamwireAddress.Strength, 5.0f);  // out of range 0 .. 1: must come back as an error

            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (!state.WaitOne(500))  // a lost or early status request is simply asked again
            {
                if (DateTime.UtcNow > deadline) { Say("timeout: no status reply showing the prompt"); return 1; }
                dreamwire.RequestStatus();
            }
            if (!error.WaitOne(TimeSpan.FromSeconds(60))) { Say("timeout: no /dreamwire/error"); return 1; }
            if (!stats.WaitOne(TimeSpan.FromSeconds(60))) { Say("timeout: no telemetry push"); return 1; }
            Say("done");
        }
        return 0;
    }
}
