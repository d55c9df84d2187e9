<#
.SYNOPSIS
Build the voxgate-server image from tts-inference-server/Dockerfile (mirrors build-tts-server.sh).

.DESCRIPTION
-Target     gpu (default): CUDA, Chatterbox Turbo + Piper;  cpu: Piper only, no torch
-Tag        image name (default voxgate/tts-server:TARGET)
-BaseImage  base image of that target (default: the Dockerfile's, python:3.11-slim-bookworm for
            cpu, nvidia/cuda:12.8.1-base-ubuntu24.04 for gpu)
-CaBundle   PEM file of extra CA certificates to trust while the build downloads packages
            (TLS-intercepting proxies); used at build time only, not left in the image
after --    passed to `docker build` as they are
Env: DOCKER (the docker CLI to run, default docker).
Prints the image id, tag, target, base image and size it built.

.EXAMPLE
.\build-tts-server.ps1
.\build-tts-server.ps1 -Target cpu -Tag voxgate/tts-server:cpu
.\build-tts-server.ps1 -CaBundle C:\certs\corporate-root.pem
.\build-tts-server.ps1 -Target cpu -- --no-cache
#>
# PositionalBinding off: loose arguments go to $DockerArgs, never to -Target.
[CmdletBinding(PositionalBinding = $false)]
param(
    [ValidateSet('gpu', 'cpu')]
    [string] $Target = 'gpu',
    [string] $Tag = '',
    [string] $BaseImage = '',
    [string] $CaBundle = '',
    [Parameter(ValueFromRemainingArguments = $true)]
    [string[]] $DockerArgs = @()
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Context = Join-Path $PSScriptRoot 'tts-inference-server'
$Dockerfile = Join-Path $Context 'Dockerfile'
$Docker = if ($env:DOCKER) { $env:DOCKER } else { 'docker' }
if (-not (Test-Path -LiteralPath $Dockerfile -PathType Leaf)) { throw "no Dockerfile at $Context" }
if (-not $Tag) { $Tag = "voxgate/tts-server:$Target" }
$BaseArg = if ($Target -eq 'gpu') { 'GPU_BASE_IMAGE' } else { 'CPU_BASE_IMAGE' }
if (-not $DockerArgs) { $DockerArgs = @() }

$BuildArgs = @('build', '--target', $Target, '--tag', $Tag, '--file', $Dockerfile)
if ($BaseImage) { $BuildArgs += @('--build-arg', "$BaseArg=$BaseImage") }

# The extra CA bundle travels in the build context under a fixed name (same content, same
# cached layers) and is removed when the build ends, whatever way it ends.
$CaDest = Join-Path $Context 'docker/ca/build-tts-server.crt'
$Copied = $false
$BaseText = if ($BaseImage) { $BaseImage } else { '(Dockerfile default)' }
$CaText = if ($CaBundle) { $CaBundle } else { 'none' }
try {
    if ($CaBundle) {
        if (-not (Test-Path -LiteralPath $CaBundle -PathType Leaf)) { throw "-CaBundle: cannot read $CaBundle" }
        if (-not (Select-String -LiteralPath $CaBundle -Pattern 'BEGIN CERTIFICATE' -SimpleMatch -Quiet)) {
            throw "-CaBundle: $CaBundle holds no PEM certificate"
        }
        Copy-Item -LiteralPath $CaBundle -Destination $CaDest -Force
        $Copied = $true
    }
    Write-Host "building target=$Target tag=$Tag base=$BaseText ca-bundle=$CaText"
    $Watch = [System.Diagnostics.Stopwatch]::StartNew()
    & $Docker @BuildArgs @DockerArgs $Context
    if ($LASTEXITCODE -ne 0) { throw "docker build failed (exit code $LASTEXITCODE)" }
    $Watch.Stop()
}
finally {
    if ($Copied) { Remove-Item -LiteralPath $CaDest -Force -ErrorAction SilentlyContinue }
}

$Inspect = & $Docker image inspect --format '{{.Id}} {{.Size}}' $Tag
if ($LASTEXITCODE -ne 0) { throw "docker image inspect $Tag failed" }
$Id, $Size = ($Inspect | Select-Object -First 1).Trim() -split ' '
Write-Host ''
Write-Host 'built image'
Write-Host "  id:      $Id"
Write-Host "  tag:     $Tag"
Write-Host "  target:  $Target"
Write-Host "  base:    $BaseText"
Write-Host ('  size:    {0:N0} MB ({1} bytes)' -f ([double]$Size / 1e6), $Size)
Write-Host ('  took:    {0:N0} s' -f $Watch.Elapsed.TotalSeconds)
