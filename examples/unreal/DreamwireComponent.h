// DreamwireComponent.h: steer a running `dreamwire run` from Unreal Engine 5 over OSC, and read its
// telemetry, with Unreal's built-in OSC plugin (no third-party code).
//
// Not compiled here: there is no Unreal toolchain in CI. tests/test_addresses.py checks every
// /dreamwire/... address in this file and the .cpp against docs/osc.md, so they cannot drift.
//
// OSC plugin API used (UE 5.1+), from Epic's reference:
//   UOSCManager::CreateOSCClient(FString SendIPAddress, int32 Port, FString ClientName, UObject* Outer)
//     https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Plugins/OSC/UOSCManager/CreateOSCClient
//   UOSCManager::CreateOSCServer(FString ReceiveIPAddress, int32 Port, bool bMulticastLoopback,
//                                bool bStartListening, FString ServerName, UObject* Outer)
//     https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Plugins/OSC/UOSCManager/CreateOSCServer
//   UOSCManager::SetOSCMessageAddress / ConvertStringToOSCAddress / AddFloat / AddInt32 / AddString /
//   AddBool / AddMessageToBundle / GetFloat / GetString / GetOSCMessageAddress / GetOSCAddressFullPath
//     https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Plugins/OSC/UOSCManager
//   UOSCClient::SendOSCMessage(FOSCMessage&), UOSCClient::SendOSCBundle(FOSCBundle&)
//     https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Plugins/OSC/UOSCClient
//   UOSCServer::OnOscMessageReceived (FOSCReceivedMessageEvent: Message, IPAddress, Port); UE 5 also
//   calls it for each message inside a received bundle, so telemetry bundles need no unpacking here.
//     https://dev.epicgames.com/documentation/en-us/unreal-engine/API/Plugins/OSC/UOSCServer
//   Plugin overview: https://dev.epicgames.com/documentation/en-us/unreal-engine/osc-plugin-overview-for-unreal-engine

#pragma once

#include "CoreMinimal.h"
#include "Components/ActorComponent.h"
#include "OSCBundle.h"
#include "OSCMessage.h"
#include "DreamwireComponent.generated.h"

class UOSCClient;
class UOSCServer;

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FDreamwireErrorEvent, const FString&, Address, const FString&, Reason);

/** One entry of prompt_blend: a prompt and its weight (0, or 1e-06 .. 1e+06; weights are normalised). */
USTRUCT(BlueprintType)
struct FDreamwirePromptWeight
{
	GENERATED_BODY()

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire")
	FString Prompt;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire", meta = (ClampMin = "0"))
	float Weight = 1.f;
};

/** One entry of seed_blend: a seed (0 .. 2147483647) and its weight. */
USTRUCT(BlueprintType)
struct FDreamwireSeedWeight
{
	GENERATED_BODY()

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire", meta = (ClampMin = "0"))
	int32 Seed = 0;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire", meta = (ClampMin = "0"))
	float Weight = 1.f;
};
DECLARE_DYNAMIC_MULTICAST_DELEGATE(FDreamwireTelemetryEvent);

/**
 * Sends dreamwire's live parameters, morphs, scenes and tempo over OSC (UDP, default 127.0.0.1:7766) and
 * listens for its telemetry and errors (default port 7767). Every setter sends at once; wrap several in
 * BeginBatch / SendBatch to send them as one OSC bundle, which dreamwire applies on a single engine
 * step (or, if any is bad, not at all). Argument types are the ones docs/osc.md lists: int32 for steps
 * and seed, float32 for numbers, OSC True/False for switches.
 */
UCLASS(ClassGroup = (Dreamwire), meta = (BlueprintSpawnableComponent))
class UDreamwireComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UDreamwireComponent();

	/** dreamwire's OSC address: `dreamwire run --osc-host/--osc-port`. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire|Connection")
	FString Host = TEXT("127.0.0.1");

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire|Connection")
	int32 OscPort = 7766;

	/** Where dreamwire sends telemetry: the port of `dreamwire run --telemetry HOST:PORT`. 0 = don't listen. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire|Connection")
	int32 TelemetryPort = 7767;

	/** `dreamwire run --osc-prefix`. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "Dreamwire|Connection")
	FString Prefix = TEXT("/dreamwire");

	// --- live parameters (docs/osc.md, "Live parameters") ---------------------------------------

	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetPrompt(const FString& Prompt);

	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetNegativePrompt(const FString& NegativePrompt);

	/** 0 .. 1: how far the output departs from the input. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetStrength(float Strength);

	/** 1 .. 8 denoising steps. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetSteps(int32 Steps);

	/** 0 .. 20; 1 = no guidance. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetGuidanceScale(float GuidanceScale);

	/** 0 .. 1 residual guidance strength. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetDelta(float Delta);

	/** 0 .. 2147483647. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetSeed(int32 Seed);

	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetSimilarityFilter(bool bEnabled);

	/** 0 .. 1 cosine similarity above which frames may be skipped. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetSimilarityThreshold(float Threshold);

	/** 0 .. 1000 consecutive skips before a frame is forced through. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetSimilarityMaxSkip(int32 MaxSkip);

	/** 0 .. 1 pull of each new frame toward the last output: steadies flicker (0.15 is a start; high smears motion). */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetLatentFeedback(float Feedback);

	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetPause(bool bPause);

	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetBypass(bool bBypass);

	/** "off", "beat" or "bar": hold changes until the next beat or bar of dreamwire's tempo. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SetQuantize(const FString& Quantize);

	// --- list parameters: sent flat (docs/osc.md); an empty array clears the list (the default) ----

	/** Up to 16 prompts mixed by their normalised weights; overrides the prompt while not empty. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetPromptBlend(const TArray<FDreamwirePromptWeight>& Blend);

	/** Up to 16 seeds whose noise is mixed by their weights; overrides the seed while not empty. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetSeedBlend(const TArray<FDreamwireSeedWeight>& Blend);

	/** Explicit ascending LCM step indices (0 .. 49, up to 8); overrides strength and steps while not empty. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetTIndexList(const TArray<int32>& Indices);

	/** 0 .. 5 per ControlNet, in `--controlnet` order (up to 4); empty = the --controlnet ID:SCALE values. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetControlNetScale(const TArray<float>& Scales);

	/** On/off per ControlNet (off skips its residuals, no rebuild); empty = all on. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetControlNetEnabled(const TArray<bool>& Enabled);

	/** 0 .. 1 per ControlNet: the fraction of the steps before which it is inactive; empty = 0. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetControlNetStart(const TArray<float>& Starts);

	/** 0 .. 1 per ControlNet: the fraction of the steps after which it is inactive; empty = 1. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|Lists")
	void SetControlNetEnd(const TArray<float>& Ends);

	// --- VJ commands (docs/osc.md, "VJ commands") -----------------------------------------------

	/** Glide a number parameter (strength, guidance_scale, delta, steps, seed, ...) to Target over
	 *  Seconds; Curve is linear, ease, ease_in or ease_out. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void Morph(const FString& Parameter, float Target, float Seconds, const FString& Curve = TEXT("linear"));

	/** Crossfade the prompt to Text over Seconds (an embedding blend). */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void MorphPrompt(const FString& Text, float Seconds, const FString& Curve = TEXT("ease"));

	/** Snapshot every live parameter as scene N (0 .. 999); persists with `dreamwire run --scenes FILE`. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void SaveScene(int32 N);

	/** Restore scene N, morphing there over Seconds (0 = at once). */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void RecallScene(int32 N, float Seconds = 0.f);

	/** 20 .. 300 beats per minute. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void SetTempo(float Bpm);

	/** A beat falls now (tap tempo). */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire|VJ")
	void TapBeat();

	/** From now until SendBatch, setters collect their messages instead of sending them. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void BeginBatch();

	/** Send what was collected since BeginBatch as one bundle: it lands on one engine step. */
	UFUNCTION(BlueprintCallable, Category = "Dreamwire")
	void SendBatch();

	// --- telemetry (docs/osc.md, "Status, telemetry and errors") ----------------------------------

	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	float Fps = 0.f;

	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	float LatencyMs = 0.f;

	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	float EngineMs = 0.f;

	/** True once dreamwire's warm-up is done (every shape a live change can reach is ready). */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	bool bReady = false;

	/** ok, degraded or failing, with the last reason. */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	FString Health;

	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	FString HealthReason;

	/** Every /dreamwire/stats/<name> value by name (fps, frames, dropped, skip_rate, osc_errors, ...). */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	TMap<FString, float> Stats;

	/** The message dreamwire last rejected and why (e.g. "strength: 5 is outside 0 .. 1"). */
	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	FString LastErrorAddress;

	UPROPERTY(VisibleAnywhere, BlueprintReadOnly, Category = "Dreamwire|Telemetry")
	FString LastError;

	/** A message was rejected, or the engine reported a failure (Address "engine"). */
	UPROPERTY(BlueprintAssignable, Category = "Dreamwire|Telemetry")
	FDreamwireErrorEvent OnError;

	/** A telemetry push arrived (about once a second); the properties above are current. */
	UPROPERTY(BlueprintAssignable, Category = "Dreamwire|Telemetry")
	FDreamwireTelemetryEvent OnTelemetry;

protected:
	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;

private:
	UFUNCTION()
	void HandleOscMessage(const FOSCMessage& Message, const FString& IPAddress, int32 Port);

	/** A message to one of the /dreamwire/... addresses, moved under Prefix when that differs. */
	FOSCMessage NewMessage(const FString& Address) const;
	void Send(FOSCMessage& Message);
	/** One float per argument, flat, as a list parameter takes them; none clears the list. */
	void SendFloats(const FString& Address, const TArray<float>& Values);
	/** An incoming address in the /dreamwire/... form whatever the prefix. */
	FString Canonical(const FString& Address) const;

	UPROPERTY(Transient)
	TObjectPtr<UOSCClient> Client;

	UPROPERTY(Transient)
	TObjectPtr<UOSCServer> Server;

	FOSCBundle Batch;
	bool bBatching = false;
};
