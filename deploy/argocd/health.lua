-- Argo CD health of a taskrun.dev/TaskRun, read from the status its agent writes.
-- Argo CD runs a check from argocd-cm without Lua's string library: this one needs none.
local hs = {}

-- "Reason: message", or whichever of the two the status has.
local function describe(status)
  local reason = status.reason or status.phase
  if status.message == nil or status.message == "" then
    return reason
  end
  return reason .. ": " .. status.message
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: waiting for its container to be removed"
  return hs
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for an agent to take the run"
  return hs
end

-- A change to the spec, such as a cancel, counts only once the agent has seen it.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the agent to see generation " .. generation
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif status.phase == "Failed" or status.phase == "Cancelled" then
  hs.status = "Degraded"
else
  -- Pending and Running, and any phase a newer agent may add: the run is not over.
  hs.status = "Progressing"
end
hs.message = describe(status)
return hs
