// DreamwireOsc.cs: OSC 1.0 for dreamwire in plain C#, with no UnityEngine types, so the same file
// builds in Unity, in a .NET console program and with Mono's `mcs` (tests/test_unity_osc.py compiles it
// and runs it against a real `dreamwire run` on loopback in CI).
//
// Why our own encoder: dreamwire rejects anything that is not byte-exact OSC 1.0 (a truncated float is
// an error, not 0.0), and it wants int32 for integer parameters, float32 for numbers, T/F for booleans
// and bundles with the timetag "immediately". Writing those ~100 lines here keeps the Unity side free of
// package dependencies and makes it say exactly what the server accepts.
//
// Addresses are written out in full ("/dreamwire/...") so a test can check every one against
// docs/osc.md; a sender or receiver built with another prefix (`dreamwire run --osc-prefix`) rewrites
// the leading "/dreamwire" on the way out and on the way in.

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Dreamwire
{
    /// <summary>The addresses dreamwire understands (docs/osc.md is the full list, with types and ranges).</summary>
    public static class DreamwireAddress
    {
        public const string Prompt = "/dreamwire/prompt";
        public const string NegativePrompt = "/dreamwire/negative_prompt";
        public const string GuidanceScale = "/dreamwire/guidance_scale";
        public const string Delta = "/dreamwire/delta";
        public const string Seed = "/dreamwire/seed";
        public const string Strength = "/dreamwire/strength";
        public const string Steps = "/dreamwire/steps";
        public const string SimilarityFilter = "/dreamwire/similarity_filter";
        public const string SimilarityThreshold = "/dreamwire/similarity_threshold";
        public const string SimilarityMaxSkip = "/dreamwire/similarity_max_skip";
        public const string LatentFeedback = "/dreamwire/latent_feedback";
        public const string Pause = "/dreamwire/pause";
        public const string Bypass = "/dreamwire/bypass";
        public const string Quantize = "/dreamwire/quantize";
        public const string PromptBlend = "/dreamwire/prompt_blend";
        public const string SeedBlend = "/dreamwire/seed_blend";
        public const string TIndexList = "/dreamwire/t_index_list";
        public const string ControlnetScale = "/dreamwire/controlnet_scale";
        public const string ControlnetEnabled = "/dreamwire/controlnet_enabled";
        public const string ControlnetStart = "/dreamwire/controlnet_start";
        public const string ControlnetEnd = "/dreamwire/controlnet_end";
        public const string Morph = "/dreamwire/morph";
        public const string SceneSave = "/dreamwire/scene/save";
        public const string SceneRecall = "/dreamwire/scene/recall";
        public const string Tempo = "/dreamwire/tempo";
        public const string Beat = "/dreamwire/beat";
        public const string Status = "/dreamwire/status";
        public const string Error = "/dreamwire/error";
        public const string Health = "/dreamwire/health";
        public const string Fps = "/dreamwire/stats/fps";
        public const string LatencyMs = "/dreamwire/stats/latency_ms";
        public const string EngineMs = "/dreamwire/stats/engine_ms";
        public const string Default = "/dreamwire";
        /// <summary>How the address of each state message in a status reply starts.</summary>
        public const string StatePrefix = Default + "/state/";
    }

    /// <summary>One decoded OSC message: its address, its arguments (int, float, string, bool, null, long,
    /// double, byte[], object[] for arrays) and its type tags without the comma.</summary>
    public sealed class OscMessage
    {
        public readonly string Address;
        public readonly object[] Args;
        public readonly string Tags;

        public OscMessage(string address, object[] args, string tags)
        {
            Address = address;
            Args = args;
            Tags = tags;
        }

        /// <summary>Argument i as a float whether it came as f, i, d or h (telemetry is all floats).</summary>
        public float Float(int i)
        {
            return Convert.ToSingle(Args[i], System.Globalization.CultureInfo.InvariantCulture);
        }

        public string Text(int i)
        {
            return Args[i] as string ?? Convert.ToString(Args[i], System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    /// <summary>OSC 1.0 packets to and from bytes: big-endian, 4-byte padded, strict on the way in.</summary>
    public static class Osc
    {
        /// <summary>The OSC timetag that means "apply on arrival"; dreamwire rejects future timetags.</summary>
        public const ulong Immediately = 1;
        static readonly byte[] BundleHead = Encoding.ASCII.GetBytes("#bundle\0");

        /// <summary>A message; int -> i, float -> f, double -> f (float32 on the wire), string -> s,
        /// bool -> T/F. Anything else throws ArgumentException, so a wrong type never goes out silently.</summary>
        public static byte[] Message(string address, params object[] args)
        {
            if (string.IsNullOrEmpty(address) || address[0] != '/')
                throw new ArgumentException("an OSC address starts with '/': " + address);
            var tags = new StringBuilder(",");
            var body = new List<byte>();
            foreach (var a in args ?? new object[0])
            {
                if (a is int) { tags.Append('i'); AddBig(body, BitConverter.GetBytes((int)a)); }
                else if (a is float) { tags.Append('f'); AddBig(body, BitConverter.GetBytes((float)a)); }
                else if (a is double) { tags.Append('f'); AddBig(body, BitConverter.GetBytes((float)(double)a)); }
                else if (a is string) { tags.Append('s'); AddString(body, (string)a); }
                else if (a is bool) { tags.Append((bool)a ? 'T' : 'F'); }
                else throw new ArgumentException("OSC argument of unsupported type " +
                                                 (a == null ? "null" : a.GetType().Name) + " for " + address);
            }
            var packet = new List<byte>();
            AddString(packet, address);
            AddString(packet, tags.ToString());
            packet.AddRange(body);
            return packet.ToArray();
        }

        /// <summary>A bundle with timetag "immediately": dreamwire applies all of it on one engine step,
        /// or none of it if any element is bad. Elements are encoded messages or bundles.</summary>
        public static byte[] Bundle(params byte[][] elements)
        {
            var packet = new List<byte>(BundleHead);
            AddBig(packet, BitConverter.GetBytes(Immediately));
            foreach (var e in elements)
            {
                if (e.Length % 4 != 0) throw new ArgumentException("a bundle element must be 4-byte aligned");
                AddBig(packet, BitConverter.GetBytes(e.Length));
                packet.AddRange(e);
            }
            return packet.ToArray();
        }

        /// <summary>Every message in a packet, bundles unpacked in order; FormatException if malformed.</summary>
        public static List<OscMessage> Decode(byte[] data, int offset, int count)
        {
            var output = new List<OscMessage>();
            DecodeInto(data, offset, count, output, 0);
            return output;
        }

        static void DecodeInto(byte[] d, int start, int count, List<OscMessage> output, int depth)
        {
            if (count < 4 || count % 4 != 0) throw new FormatException("OSC packet of " + count + " bytes");
            if (d[start] == '#')
            {
                if (depth > 8) throw new FormatException("bundles nested too deep");
                for (int k = 0; k < 8; k++)
                    if (count < 16 || d[start + k] != BundleHead[k]) throw new FormatException("bad bundle header");
                int i = start + 16, end = start + count;  // 8 header bytes + the 8-byte timetag
                while (i < end)
                {
                    int size = ReadInt(d, i, end);
                    i += 4;
                    if (size <= 0 || i + size > end) throw new FormatException("bundle element overruns");
                    DecodeInto(d, i, size, output, depth + 1);
                    i += size;
                }
                return;
            }
            output.Add(DecodeMessage(d, start, start + count));
        }

        static OscMessage DecodeMessage(byte[] d, int i, int end)
        {
            string address = ReadString(d, ref i, end);
            if (i >= end) return new OscMessage(address, new object[0], "");
            string tags = ReadString(d, ref i, end);
            if (tags.Length == 0 || tags[0] != ',') throw new FormatException(address + ": no type tags");
            var stack = new Stack<List<object>>();
            var args = new List<object>();
            foreach (char t in tags.Substring(1))
            {
                switch (t)
                {
                    case 'i': args.Add(ReadInt(d, i, end)); i += 4; break;
                    case 'f': args.Add(BitConverter.ToSingle(Big(d, i, 4, end), 0)); i += 4; break;
                    case 'h': args.Add(BitConverter.ToInt64(Big(d, i, 8, end), 0)); i += 8; break;
                    case 'd': args.Add(BitConverter.ToDouble(Big(d, i, 8, end), 0)); i += 8; break;
                    case 't': args.Add(BitConverter.ToUInt64(Big(d, i, 8, end), 0)); i += 8; break;
                    case 's': case 'S': args.Add(ReadString(d, ref i, end)); break;
                    case 'T': args.Add(true); break;
                    case 'F': args.Add(false); break;
                    case 'N': args.Add(null); break;
                    case 'b':
                        int n = ReadInt(d, i, end);
                        if (n < 0 || i + 4 + n > end) throw new FormatException(address + ": blob overruns");
                        var blob = new byte[n];
                        Array.Copy(d, i + 4, blob, 0, n);
                        args.Add(blob);
                        i += 4 + ((n + 3) & ~3);
                        break;
                    case '[': stack.Push(args); args = new List<object>(); break;
                    case ']':
                        if (stack.Count == 0) throw new FormatException(address + ": unbalanced ']'");
                        var inner = args.ToArray();
                        args = stack.Pop();
                        args.Add(inner);
                        break;
                    default: throw new FormatException(address + ": unknown type tag '" + t + "'");
                }
            }
            if (stack.Count != 0) throw new FormatException(address + ": unbalanced '['");
            if (i != end) throw new FormatException(address + ": " + (end - i) + " bytes after the arguments");
            return new OscMessage(address, args.ToArray(), tags.Substring(1));
        }

        static void AddBig(List<byte> output, byte[] native)
        {
            if (BitConverter.IsLittleEndian) Array.Reverse(native);
            output.AddRange(native);
        }

        static void AddString(List<byte> output, string s)
        {
            if (s.IndexOf('\0') >= 0) throw new ArgumentException("an OSC string cannot hold NUL characters");
            var bytes = Encoding.UTF8.GetBytes(s);
            output.AddRange(bytes);
            for (int pad = 4 - bytes.Length % 4; pad > 0; pad--) output.Add(0);  // 1..4 NULs
        }

        static byte[] Big(byte[] d, int i, int n, int end)
        {
            if (i + n > end) throw new FormatException("argument truncated");
            var b = new byte[n];
            Array.Copy(d, i, b, 0, n);
            if (BitConverter.IsLittleEndian) Array.Reverse(b);
            return b;
        }

        static int ReadInt(byte[] d, int i, int end)
        {
            return BitConverter.ToInt32(Big(d, i, 4, end), 0);
        }

        static string ReadString(byte[] d, ref int i, int end)
        {
            int z = i;
            while (z < end && d[z] != 0) z++;
            if (z >= end) throw new FormatException("unterminated OSC string");
            string s = Encoding.UTF8.GetString(d, i, z - i);
            i = (z + 4) & ~3;  // past the NUL and the padding, to the next multiple of 4
            if (i > end) throw new FormatException("OSC string padding truncated");
            return s;
        }

        /// <summary>An address such as /dreamwire/prompt under another prefix, for `dreamwire run --osc-prefix`.</summary>
        internal static string Rewrite(string address, string from, string to)
        {
            if (from == to || !address.StartsWith(from + "/", StringComparison.Ordinal)) return address;
            return to + address.Substring(from.Length);
        }
    }

    /// <summary>Sends to dreamwire's OSC port over UDP. Status replies come back to this socket, so give
    /// <see cref="Socket"/> to an <see cref="OscReceiver"/> to read them.</summary>
    public sealed class DreamwireSender : IDisposable
    {
        public readonly UdpClient Socket;
        readonly IPEndPoint target;
        readonly string prefix;

        public DreamwireSender(string host = "127.0.0.1", int port = 7766, string prefix = DreamwireAddress.Default)
        {
            Socket = new UdpClient(new IPEndPoint(IPAddress.Any, 0));
            // the socket is IPv4, so "localhost" must not resolve to ::1 here
            var v4 = Array.Find(Dns.GetHostAddresses(host), a => a.AddressFamily == AddressFamily.InterNetwork);
            if (v4 == null) throw new ArgumentException("no IPv4 address for OSC host " + host);
            target = new IPEndPoint(v4, port);
            this.prefix = prefix.TrimEnd('/');
        }

        public void Send(string address, params object[] args)
        {
            SendPacket(Osc.Message(Osc.Rewrite(address, DreamwireAddress.Default, prefix), args));
        }

        /// <summary>Several changes that must land on the same frame: build each with
        /// <see cref="Message"/>, then send them here as one bundle.</summary>
        public void SendBundle(params byte[][] messages)
        {
            SendPacket(Osc.Bundle(messages));
        }

        public byte[] Message(string address, params object[] args)
        {
            return Osc.Message(Osc.Rewrite(address, DreamwireAddress.Default, prefix), args);
        }

        /// <summary>Ask for every current value; the reply is one bundle, a state message per parameter and
        /// a stats message per statistic, sent back to <see cref="Socket"/>.</summary>
        public void RequestStatus()
        {
            Send(DreamwireAddress.Status);
        }

        public void SendPacket(byte[] packet)
        {
            Socket.Send(packet, packet.Length, target);
        }

        public void Dispose()
        {
            Socket.Close();
        }
    }

    /// <summary>Listens for OSC on a background thread and calls a handler per address. Handlers run on
    /// that thread: in Unity, store the values and read them in Update (Unity's API is main-thread only).</summary>
    public sealed class OscReceiver : IDisposable
    {
        readonly UdpClient socket;
        readonly bool owned;
        readonly string prefix;
        readonly Dictionary<string, Action<OscMessage>> handlers = new Dictionary<string, Action<OscMessage>>();
        Thread thread;
        volatile bool stopping;

        /// <summary>Every message, after the per-address handler (if any).</summary>
        public event Action<OscMessage> Any;
        /// <summary>A datagram that is not valid OSC, with the reason.</summary>
        public event Action<string> Malformed;
        /// <summary>A handler threw, or the socket failed for good (then the thread ends). Without this
        /// event the exception would end the thread; an uncaught one would take the whole app down.</summary>
        public event Action<Exception> Failed;

        /// <summary>Listen on a port, e.g. 7767 where dreamwire sends telemetry and errors.</summary>
        public OscReceiver(int port, string host = "127.0.0.1", string prefix = DreamwireAddress.Default)
            : this(new UdpClient(new IPEndPoint(IPAddress.Parse(host), port)), true, prefix) { }

        /// <summary>Read a socket you already have, e.g. <see cref="DreamwireSender.Socket"/> for status replies.</summary>
        public OscReceiver(UdpClient socket, string prefix = DreamwireAddress.Default) : this(socket, false, prefix) { }

        OscReceiver(UdpClient socket, bool owned, string prefix)
        {
            this.socket = socket;
            this.owned = owned;
            this.prefix = prefix.TrimEnd('/');
        }

        /// <summary>Call <paramref name="handler"/> for each message to this exact address (in the
        /// /dreamwire/... form whatever the server's prefix). Register before <see cref="Start"/>.</summary>
        public OscReceiver On(string address, Action<OscMessage> handler)
        {
            lock (handlers) handlers[address] = handler;
            return this;
        }

        public OscReceiver Start()
        {
            thread = new Thread(Run) { IsBackground = true, Name = "dreamwire-osc-receiver" };
            thread.Start();
            return this;
        }

        void Run()
        {
            var from = new IPEndPoint(IPAddress.Any, 0);
            while (!stopping)
            {
                byte[] data;
                try { data = socket.Receive(ref from); }
                catch (SocketException e)
                {
                    if (stopping) return;
                    if (e.SocketErrorCode == SocketError.ConnectionReset) continue;  // Windows: ICMP port unreachable
                    Report(e);  // closed under us (e.g. the sender was disposed first) or a real failure
                    return;
                }
                catch (ObjectDisposedException) { return; }
                List<OscMessage> messages;
                try { messages = Osc.Decode(data, 0, data.Length); }
                catch (FormatException e)
                {
                    var bad = Malformed;
                    if (bad != null) bad(e.Message);
                    continue;
                }
                foreach (var m in messages) Dispatch(m);
            }
        }

        void Dispatch(OscMessage m)
        {
            var message = new OscMessage(Osc.Rewrite(m.Address, prefix, DreamwireAddress.Default), m.Args, m.Tags);
            Action<OscMessage> handler;
            lock (handlers) handlers.TryGetValue(message.Address, out handler);
            try
            {
                if (handler != null) handler(message);
                var any = Any;
                if (any != null) any(message);
            }
            catch (Exception e)  // a bug in one handler costs that message, not the receiver
            {
                Report(e);
            }
        }

        void Report(Exception e)
        {
            var failed = Failed;
            if (failed != null) failed(e);
        }

        /// <summary>Stop; a receiver on a borrowed socket stops when that socket closes, so dispose it
        /// before the sender that owns the socket.</summary>
        public void Dispose()
        {
            stopping = true;
            if (owned) socket.Close();
            if (thread != null && owned) thread.Join(2000);
        }
    }
}
