// A stand-in for the few UnityEngine types examples/unity/DreamwireControl.cs uses, with the signatures
// of Unity's scripting reference (docs.unity3d.com/ScriptReference: MonoBehaviour, HeaderAttribute,
// TooltipAttribute, TextAreaAttribute, RangeAttribute, MinAttribute, ContextMenu, AddComponentMenu,
// Debug.LogWarning, GUI.Label, Rect). It lets Mono's compiler type-check the MonoBehaviour and a test
// drive its Update loop; it is not Unity, so what Unity itself does (serialization, the inspector)
// is not tested here.

using System;

namespace UnityEngine
{
    public class Object { }
    public class Component : Object { }
    public class Behaviour : Component { public bool enabled { get; set; } }
    public class MonoBehaviour : Behaviour { }

    public abstract class PropertyAttribute : Attribute { }
    [AttributeUsage(AttributeTargets.Field, AllowMultiple = true)]
    public class HeaderAttribute : PropertyAttribute { public HeaderAttribute(string header) { } }
    [AttributeUsage(AttributeTargets.Field)]
    public class TooltipAttribute : PropertyAttribute { public TooltipAttribute(string tooltip) { } }
    [AttributeUsage(AttributeTargets.Field)]
    public class TextAreaAttribute : PropertyAttribute { public TextAreaAttribute(int minLines, int maxLines) { } }
    [AttributeUsage(AttributeTargets.Field)]
    public class RangeAttribute : PropertyAttribute { public RangeAttribute(float min, float max) { } }
    [AttributeUsage(AttributeTargets.Field)]
    public class MinAttribute : PropertyAttribute { public MinAttribute(float min) { } }
    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
    public class ContextMenu : Attribute { public ContextMenu(string itemName) { } }
    [AttributeUsage(AttributeTargets.Class)]
    public class AddComponentMenu : Attribute { public AddComponentMenu(string menuName) { } }

    public struct Rect { public Rect(float x, float y, float width, float height) { } }
    public class GUI { public static void Label(Rect position, string text) { } }
    public class Debug { public static void LogWarning(object message) { Console.WriteLine("warning: " + message); } }
}
