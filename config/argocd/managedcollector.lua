-- Argo CD health of a ManagedCollector (collectors.linkmesh.io/v1alpha1), from its kstatus conditions.
-- Use as resource.customizations.health.collectors.linkmesh.io_ManagedCollector in argocd-cm.
local hs = {}
local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.observedGeneration == nil or
    obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end

local ready = condition("Ready")
local stalled = condition("Stalled")
local reconciling = condition("Reconciling")
local rollout = obj.status.rollout

if rollout ~= nil and rollout.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = (ready and ready.message) or "The rollout is paused (spec.rollout.paused)"
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end
if ready ~= nil and ready.reason == "Unhealthy" then
  hs.status = "Degraded"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = (ready and ready.message) or "Waiting for the operator to report"
return hs
