// DreamwireComponent.cpp: see DreamwireComponent.h for what it does and which OSC plugin API it uses.
// Not compiled here (no Unreal toolchain); its addresses are checked against docs/osc.md by
// tests/test_addresses.py.

#include "DreamwireComponent.h"

#include "OSCClient.h"
#include "OSCManager.h"
#include "OSCServer.h"

DEFINE_LOG_CATEGORY_STATIC(LogDreamwire, Log, All);

namespace
{
	const FString DefaultPrefix = TEXT("/dreamwire");
	const FString StatsPrefix = DefaultPrefix + TEXT("/stats/");
}

UDreamwireComponent::UDreamwireComponent()
{
	PrimaryComponentTick.bCanEverTick = false;  // everything is event driven
}

void UDreamwireComponent::BeginPlay()
{
	Super::BeginPlay();
	Client = UOSCManager::CreateOSCClient(Host, OscPort, TEXT("DreamwireClient"), this);
	if (Client == nullptr)
	{
		UE_LOG(LogDreamwire, Warning, TEXT("Dreamwire: cannot create an OSC client for %s:%d"), *Host, OscPort);
	}
	if (TelemetryPort > 0)
	{
		// 0.0.0.0: also hears a dreamwire on another machine started with --telemetry THIS_IP:PORT
		Server = UOSCManager::CreateOSCServer(TEXT("0.0.0.0"), TelemetryPort, false, true, TEXT("DreamwireTelemetry"), this);
		if (Server != nullptr && Server->IsActive())
		{
			Server->OnOscMessageReceived.AddDynamic(this, &UDreamwireComponent::HandleOscMessage);
		}
		else  // CreateOSCServer returns a server that is not listening when the port cannot be bound
		{
			UE_LOG(LogDreamwire, Warning, TEXT("Dreamwire: cannot listen for telemetry on port %d (in use?)"), TelemetryPort);
		}
	}
}

void UDreamwireComponent::EndPlay(const EEndPlayReason::Type EndPlayReason)
{
	if (Server != nullptr)
	{
		Server->OnOscMessageReceived.RemoveDynamic(this, &UDreamwireComponent::HandleOscMessage);
		Server->Stop();
	}
	Server = nullptr;
	Client = nullptr;
	Super::EndPlay(EndPlayReason);
}

// --- sending ---------------------------------------------------------------------------------------

FOSCMessage UDreamwireComponent::NewMessage(const FString& Address) const
{
	FString Full = Address;
	if (Prefix != DefaultPrefix && Address.StartsWith(DefaultPrefix + TEXT("/")))
	{
		Full = Prefix + Address.RightChop(DefaultPrefix.Len());
	}
	FOSCMessage Message;
	UOSCManager::SetOSCMessageAddress(Message, UOSCManager::ConvertStringToOSCAddress(Full));
	return Message;
}

void UDreamwireComponent::Send(FOSCMessage& Message)
{
	if (bBatching)
	{
		UOSCManager::AddMessageToBundle(Message, Batch);
	}
	else if (Client != nullptr)
	{
		Client->SendOSCMessage(Message);
	}
}

void UDreamwireComponent::BeginBatch()
{
	UOSCManager::ClearBundle(Batch);
	bBatching = true;
}

void UDreamwireComponent::SendBatch()
{
	bBatching = false;
	// dreamwire applies a bundle whose timetag is "immediately" or in the past (a zero timetag counts)
	// on arrival; only future timetags are rejected, and this bundle never sets one.
	if (Client != nullptr)
	{
		Client->SendOSCBundle(Batch);
	}
	UOSCManager::ClearBundle(Batch);
}

void UDreamwireComponent::SetPrompt(const FString& Prompt)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/prompt"));
	Send(UOSCManager::AddString(M, Prompt));
}

void UDreamwireComponent::SetNegativePrompt(const FString& NegativePrompt)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/negative_prompt"));
	Send(UOSCManager::AddString(M, NegativePrompt));
}

void UDreamwireComponent::SetStrength(float Strength)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/strength"));
	Send(UOSCManager::AddFloat(M, Strength));
}

void UDreamwireComponent::SetSteps(int32 Steps)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/steps"));
	Send(UOSCManager::AddInt32(M, Steps));
}

void UDreamwireComponent::SetGuidanceScale(float GuidanceScale)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/guidance_scale"));
	Send(UOSCManager::AddFloat(M, GuidanceScale));
}

void UDreamwireComponent::SetDelta(float Delta)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/delta"));
	Send(UOSCManager::AddFloat(M, Delta));
}

void UDreamwireComponent::SetSeed(int32 Seed)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/seed"));
	Send(UOSCManager::AddInt32(M, Seed));
}

void UDreamwireComponent::SetSimilarityFilter(bool bEnabled)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/similarity_filter"));
	Send(UOSCManager::AddBool(M, bEnabled));
}

void UDreamwireComponent::SetSimilarityThreshold(float Threshold)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/similarity_threshold"));
	Send(UOSCManager::AddFloat(M, Threshold));
}

void UDreamwireComponent::SetSimilarityMaxSkip(int32 MaxSkip)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/similarity_max_skip"));
	Send(UOSCManager::AddInt32(M, MaxSkip));
}

void UDreamwireComponent::SetLatentFeedback(float Feedback)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/latent_feedback"));
	Send(UOSCManager::AddFloat(M, Feedback));
}

void UDreamwireComponent::SetPause(bool bPause)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/pause"));
	Send(UOSCManager::AddBool(M, bPause));
}

void UDreamwireComponent::SetBypass(bool bBypass)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/bypass"));
	Send(UOSCManager::AddBool(M, bBypass));
}

void UDreamwireComponent::SetQuantize(const FString& Quantize)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/quantize"));
	Send(UOSCManager::AddString(M, Quantize));
}

void UDreamwireComponent::SetPromptBlend(const TArray<FDreamwirePromptWeight>& Blend)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/prompt_blend"));
	for (const FDreamwirePromptWeight& Entry : Blend)
	{
		UOSCManager::AddString(M, Entry.Prompt);
		UOSCManager::AddFloat(M, Entry.Weight);
	}
	Send(M);
}

void UDreamwireComponent::SetSeedBlend(const TArray<FDreamwireSeedWeight>& Blend)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/seed_blend"));
	for (const FDreamwireSeedWeight& Entry : Blend)
	{
		UOSCManager::AddInt32(M, Entry.Seed);
		UOSCManager::AddFloat(M, Entry.Weight);
	}
	Send(M);
}

void UDreamwireComponent::SetTIndexList(const TArray<int32>& Indices)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/t_index_list"));
	for (int32 Index : Indices)
	{
		UOSCManager::AddInt32(M, Index);
	}
	Send(M);
}

void UDreamwireComponent::SetControlNetScale(const TArray<float>& Scales)
{
	SendFloats(TEXT("/dreamwire/controlnet_scale"), Scales);
}

void UDreamwireComponent::SetControlNetEnabled(const TArray<bool>& Enabled)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/controlnet_enabled"));
	for (bool bOn : Enabled)
	{
		UOSCManager::AddBool(M, bOn);
	}
	Send(M);
}

void UDreamwireComponent::SetControlNetStart(const TArray<float>& Starts)
{
	SendFloats(TEXT("/dreamwire/controlnet_start"), Starts);
}

void UDreamwireComponent::SetControlNetEnd(const TArray<float>& Ends)
{
	SendFloats(TEXT("/dreamwire/controlnet_end"), Ends);
}

void UDreamwireComponent::SendFloats(const FString& Address, const TArray<float>& Values)
{
	FOSCMessage M = NewMessage(Address);
	for (float Value : Values)
	{
		UOSCManager::AddFloat(M, Value);
	}
	Send(M);
}

void UDreamwireComponent::Morph(const FString& Parameter, float Target, float Seconds, const FString& Curve)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/morph"));
	UOSCManager::AddString(M, Parameter);
	UOSCManager::AddFloat(M, Target);
	UOSCManager::AddFloat(M, Seconds);
	Send(UOSCManager::AddString(M, Curve));
}

void UDreamwireComponent::MorphPrompt(const FString& Text, float Seconds, const FString& Curve)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/morph"));
	UOSCManager::AddString(M, TEXT("prompt"));
	UOSCManager::AddString(M, Text);
	UOSCManager::AddFloat(M, Seconds);
	Send(UOSCManager::AddString(M, Curve));
}

void UDreamwireComponent::SaveScene(int32 N)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/scene/save"));
	Send(UOSCManager::AddInt32(M, N));
}

void UDreamwireComponent::RecallScene(int32 N, float Seconds)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/scene/recall"));
	UOSCManager::AddInt32(M, N);
	Send(UOSCManager::AddFloat(M, Seconds));
}

void UDreamwireComponent::SetTempo(float Bpm)
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/tempo"));
	Send(UOSCManager::AddFloat(M, Bpm));
}

void UDreamwireComponent::TapBeat()
{
	FOSCMessage M = NewMessage(TEXT("/dreamwire/beat"));
	Send(M);
}

// --- telemetry -------------------------------------------------------------------------------------

FString UDreamwireComponent::Canonical(const FString& Address) const
{
	if (Prefix != DefaultPrefix && Address.StartsWith(Prefix + TEXT("/")))
	{
		return DefaultPrefix + Address.RightChop(Prefix.Len());
	}
	return Address;
}

void UDreamwireComponent::HandleOscMessage(const FOSCMessage& Message, const FString& IPAddress, int32 Port)
{
	// The OSC server dispatches on the game thread, so setting properties and broadcasting is safe here.
	const FString Address = Canonical(UOSCManager::GetOSCAddressFullPath(UOSCManager::GetOSCMessageAddress(Message)));
	if (Address.StartsWith(StatsPrefix))
	{
		float Value = 0.f;
		if (!UOSCManager::GetFloat(Message, 0, Value))
		{
			return;  // every stats message carries one float; anything else is not dreamwire's
		}
		const FString Name = Address.RightChop(StatsPrefix.Len());
		Stats.Add(Name, Value);
		if (Address == TEXT("/dreamwire/stats/fps")) Fps = Value;
		else if (Address == TEXT("/dreamwire/stats/latency_ms")) LatencyMs = Value;
		else if (Address == TEXT("/dreamwire/stats/engine_ms")) EngineMs = Value;
		else if (Address == TEXT("/dreamwire/stats/ready")) bReady = Value >= 0.5f;
	}
	else if (Address == TEXT("/dreamwire/health"))
	{
		UOSCManager::GetString(Message, 0, Health);
		UOSCManager::GetString(Message, 1, HealthReason);
		OnTelemetry.Broadcast();  // health closes every telemetry push
	}
	else if (Address == TEXT("/dreamwire/error"))
	{
		UOSCManager::GetString(Message, 0, LastErrorAddress);
		UOSCManager::GetString(Message, 1, LastError);
		UE_LOG(LogDreamwire, Warning, TEXT("dreamwire rejected %s: %s"), *LastErrorAddress, *LastError);
		OnError.Broadcast(LastErrorAddress, LastError);
	}
}
