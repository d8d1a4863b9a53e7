-- Argo CD health of an EnrollmentToken (collectors.linkmesh.io/v1alpha1), from its phase and Usable
-- condition. Use as resource.customizations.health.collectors.linkmesh.io_EnrollmentToken in argocd-cm.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to mint the token"
  return hs
end
local usable = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Usable" then
      usable = c
    end
  end
end
local phase = obj.status.phase
if phase == "Revoked" then
  hs.status = "Suspended"
  hs.message = "Revoked: its host, if any, is refused"
elseif phase == "Expired" then
  hs.status = "Degraded"
  hs.message = (usable and usable.message) or "Expired unredeemed: mint a new EnrollmentToken"
elseif usable ~= nil and usable.status == "False" then
  hs.status = "Degraded"
  hs.message = usable.message
else
  -- Pending waits for its host, which is what a token is for; Redeemed serves it.
  hs.status = "Healthy"
  hs.message = (usable and usable.message) or phase
end
return hs
